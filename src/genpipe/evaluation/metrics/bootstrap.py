"""Percentile bootstrap confidence intervals, so the registry can tell a win from noise."""

from __future__ import annotations

from collections.abc import Callable

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


def bootstrap_ci(
    statistic: Callable[[Tensor], float],
    n: int,
    n_boot: int,
    generator: torch.Generator,
    alpha: float = 0.05,
) -> tuple[float, float]:
    """(1 - alpha) percentile interval of `statistic` over `n_boot` resamples of range(n).

    `statistic` receives the resampled indices [n] (int64, with replacement) rather than data,
    so one helper serves set metrics (FD, PRDC: index the fake features) and per-image ones.
    """
    _check(n, n_boot, alpha)
    resamples = torch.randint(0, n, (n_boot, n), generator=generator)  # [B, n]
    values = torch.tensor([float(statistic(idx)) for idx in resamples], dtype=torch.float64)
    return _percentiles(values, alpha)


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
