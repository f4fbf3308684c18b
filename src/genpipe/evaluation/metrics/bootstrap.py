"""Percentile bootstrap confidence intervals, so the registry can tell a win from noise."""

from __future__ import annotations

import torch
from torch import Tensor

from genpipe.evaluation.metrics._inputs import MetricInputError


def _check(n: int, n_boot: int, alpha: float) -> None:
    if n < 1 or n_boot < 1 or not 0 < alpha < 1:
        raise MetricInputError(
            f"bootstrap needs n >= 1, n_boot >= 1 and 0 < alpha < 1, got {n}, {n_boot}, {alpha}; "
            "check evaluate.bootstrap"
        )


def _percentiles(values: Tensor, alpha: float) -> tuple[float, float]:
    bounds = torch.tensor([alpha / 2, 1 - alpha / 2], dtype=torch.float64)
    lo, hi = torch.quantile(values.to(torch.float64), bounds)
    return float(lo), float(hi)


def mean_ci(
    values: Tensor, n_boot: int, generator: torch.Generator, alpha: float = 0.05
) -> tuple[float, float, float]:
    """(mean, lo, hi) of per-item values [N] (e.g. per-image PSNR), resampled all at once."""
    if values.ndim != 1:
        raise MetricInputError(f"mean_ci expects a 1-d tensor of values, got {tuple(values.shape)}")
    _check(values.shape[0], n_boot, alpha)
    v = values.detach().to(device="cpu", dtype=torch.float64)
    resamples = torch.randint(0, v.shape[0], (n_boot, v.shape[0]), generator=generator)  # [B, N]
    lo, hi = _percentiles(v[resamples].mean(dim=1), alpha)
    return float(v.mean()), lo, hi
