"""Config of the `evaluate` and `register` stages."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, PositiveFloat, PositiveInt

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
    ssim_window: PositiveInt
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
