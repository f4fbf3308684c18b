"""Config of the `evaluate` and `register` stages."""

from __future__ import annotations

import math
from typing import Literal

from pydantic import Field, PositiveFloat, PositiveInt, ValidationInfo, field_validator

from genpipe.config.base import Section


class LatentSearchConfig(Section):
    """Restoration by optimising a latent code (CSGM, Yeh et al. 2017)."""

    steps: PositiveInt
    restarts: PositiveInt
    lr: PositiveFloat
    prior_weight: float = Field(ge=0)


class MaskConfig(Section):
    center_block: float = Field(gt=0, lt=1)
    random_pixels: float = Field(gt=0, lt=1)


class GaussianSsimConfig(Section):
    """The standard SSIM (Wang et al. 2004: 11x11 Gaussian window, sigma 1.5), reported beside
    the small-window `ssim` so 28x28 figures compare with published ones. Scored only on images
    at least `window` px high and wide: the window does not fit an 8x8 digit."""

    window: int = Field(ge=3)
    sigma: PositiveFloat

    @field_validator("window")
    @classmethod
    def _odd(cls, v: int) -> int:
        if v % 2 == 0:
            raise ValueError(f"window must be odd (a window has a centre pixel), got {v}")
        return v


class EvaluateConfig(Section):
    """`evaluate:` the shared protocol both models are judged by."""

    seed: int
    n_samples: PositiveInt | None
    draws: PositiveInt  # independent sample draws per source: the CI is over these
    bootstrap: PositiveInt
    kid_subset_size: PositiveInt
    kid_subsets: PositiveInt
    prdc_k: PositiveInt
    noise_sigmas: list[PositiveFloat]
    masks: MaskConfig
    n_restore: PositiveInt
    latent_search: LatentSearchConfig
    ssim_window: PositiveInt  # `ssim`: a uniform window small enough for 8x8 images
    ssim_gaussian: GaussianSsimConfig  # `ssim_gaussian`: the standard SSIM, where it fits
    snapshot_selection_samples: PositiveInt
    # a sample counts as recognised when the evaluator's top class has at least this probability
    recognition_confidence: float = Field(gt=0, le=1)


GenerationMetric = Literal[
    "fd",
    "kid",
    "precision",
    "recall",
    "density",
    "coverage",
    "is",
    "class_coverage",
    "class_entropy",
    "recognised",
]


class SeedSpreadConfig(Section):
    """`register.seed_spread:` how much retraining alone moves each task's metric.

    The sd over training seeds that `make verdict-seeds` measures, in the units of
    register.<task>_metric; empty = not measured. Read only by tie_rule
    seed_spread_keeps_champion. `dataset` names the data it was measured on, so a spread measured
    on digits is not applied to MNIST.
    """

    dataset: str | None = Field(min_length=1)
    generation: float | None
    restoration: float | None

    @field_validator("generation", "restoration")
    @classmethod
    def _a_measured_sd(cls, value: float | None, info: ValidationInfo) -> float | None:
        if value is None:
            return None
        if not math.isfinite(value) or value <= 0:
            raise ValueError(
                "must be a standard deviation over training seeds, a number > 0 as "
                "`make verdict-seeds` prints it, or empty when not measured"
            )
        if info.data.get("dataset") is None:
            raise ValueError(
                "needs register.seed_spread.dataset too, the dataset it was measured on "
                "(`make verdict-seeds` prints it, e.g. digits)"
            )
        return value


class RegisterConfig(Section):
    """`register:` how a champion per task is chosen and named in the registry."""

    model_name_prefix: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    # primary metric per task, read from report.json; fd and kid are lower-is-better, others higher
    generation_metric: GenerationMetric
    restoration_metric: Literal["psnr", "ssim"]
    tie_rule: Literal[
        "overlapping_ci_keeps_champion", "point_estimate", "seed_spread_keeps_champion"
    ]
    seed_spread: SeedSpreadConfig

    @field_validator("seed_spread")
    @classmethod
    def _spread_for_the_rule(
        cls, value: SeedSpreadConfig, info: ValidationInfo
    ) -> SeedSpreadConfig:
        """A seed-spread rule with no spread at all could never apply: surely a forgotten -S."""
        measured = value.generation is not None or value.restoration is not None
        if info.data.get("tie_rule") == "seed_spread_keeps_champion" and not measured:
            raise ValueError(
                "register.tie_rule is seed_spread_keeps_champion but no task has a seed spread: "
                "run `make verdict-seeds` and set the values it prints (register.seed_spread."
                "dataset, .generation, .restoration), or set register.tie_rule to "
                "overlapping_ci_keeps_champion"
            )
        return value
