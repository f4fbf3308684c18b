"""Input checks shared by the metrics, so a bad protocol fails with a message and not a NaN."""

from __future__ import annotations

import torch
from torch import Tensor

from genpipe.errors import GenpipeError


class MetricInputError(GenpipeError, ValueError):
    """Features or images a metric cannot score (wrong shape, too few samples)."""


def as_features(x: Tensor, name: str, min_rows: int = 2, check_finite: bool = True) -> Tensor:
    """`x` as float64 [N, D] on the CPU: distances and covariances lose digits in float32."""
    if x.ndim != 2:
        raise MetricInputError(f"{name}: expected features of shape [N, D], got {tuple(x.shape)}")
    if x.shape[0] < min_rows:
        raise MetricInputError(
            f"{name}: needs at least {min_rows} samples, got {x.shape[0]}; "
            "raise evaluate.n_samples or use a larger split"
        )
    x = x.detach().to(device="cpu", dtype=torch.float64)  # metrics run on the CPU
    if check_finite:  # NaN/inf anywhere reaches the sum; isfinite(x) would allocate a mask of x
        require_finite(x.sum(), name)
    return x


def require_finite(summary: Tensor, name: str) -> None:
    """Raise if a reduction of the features (their sum, their mean) is NaN or inf."""
    if not torch.isfinite(summary).all():
        raise MetricInputError(f"{name}: features contain NaN or inf (check the feature extractor)")


def same_width(real: Tensor, fake: Tensor) -> None:
    if real.shape[1] != fake.shape[1]:
        raise MetricInputError(
            f"real and fake features differ in width: {real.shape[1]} vs {fake.shape[1]}"
        )
