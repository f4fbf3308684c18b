"""Config of the `evaluate` and `register` stages."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, PositiveFloat, PositiveInt, field_validator

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


class RegisterConfig(Section):
    """`register:` how a champion per task is chosen and named in the registry."""

    model_name_prefix: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    # primary metric per task, read from report.json; fd and kid are lower-is-better, others higher
    generation_metric: GenerationMetric
    restoration_metric: Literal["psnr", "ssim"]
    tie_rule: Literal["overlapping_ci_keeps_champion", "point_estimate"]
