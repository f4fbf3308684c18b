"""Config of the `evaluate` and `register` stages."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, PositiveFloat, PositiveInt

from genpipe.config.base import Section


class LatentSearchConfig(Section):
    """Restoration by optimising a latent code (CSGM, Yeh et al. 2017)."""

    steps: PositiveInt = 100
    restarts: PositiveInt = 3
    lr: PositiveFloat = 0.1
    prior_weight: float = Field(default=1e-2, ge=0)


class MaskConfig(Section):
    center_block: float = Field(default=0.5, gt=0, lt=1)
    random_pixels: float = Field(default=0.5, gt=0, lt=1)


class EvaluateConfig(Section):
    """`evaluate:` the shared protocol both models are judged by."""

    seed: int = 0
    n_samples: PositiveInt | None = None
    draws: PositiveInt = 10  # independent sample draws per source: the CI is over these
    bootstrap: PositiveInt = 200
    kid_subset_size: PositiveInt = 1000
    kid_subsets: PositiveInt = 50
    prdc_k: PositiveInt = 5
    noise_sigmas: list[PositiveFloat] = [0.1, 0.3, 0.5]
    masks: MaskConfig = MaskConfig()
    n_restore: PositiveInt = 128
    latent_search: LatentSearchConfig = LatentSearchConfig()
    ssim_window: PositiveInt = 3
    snapshot_selection_samples: PositiveInt = 500


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
]


class RegisterConfig(Section):
    """`register:` how a champion per task is chosen and named in the registry."""

    model_name_prefix: str = Field(default="genpipe", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    # primary metric per task, read from report.json; fd and kid are lower-is-better, others higher
    generation_metric: GenerationMetric = "fd"
    restoration_metric: Literal["psnr", "ssim"] = "psnr"
    tie_rule: Literal["overlapping_ci_keeps_champion", "point_estimate"] = (
        "overlapping_ci_keeps_champion"
    )
