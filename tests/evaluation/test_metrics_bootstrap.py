"""Percentile bootstrap intervals."""

from __future__ import annotations

import pytest
import torch

from genpipe.evaluation.metrics import MetricInputError, mean_ci


def _values(n: int, seed: int = 0) -> torch.Tensor:
    return 20 + 2 * torch.randn(
        n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64
    )


def test_mean_ci_brackets_the_mean_with_the_normal_width() -> None:
    values = _values(400)
    mean, lo, hi = mean_ci(values, n_boot=2000, generator=torch.Generator().manual_seed(1))
    assert mean == pytest.approx(float(values.mean()))
    assert lo < mean < hi
    normal_half_width = 1.96 * float(values.std()) / 400**0.5
    assert (hi - lo) / 2 == pytest.approx(normal_half_width, rel=0.1)


def test_mean_ci_narrows_with_alpha_and_is_reproducible() -> None:
    values = _values(100, seed=4)

    def ci(alpha: float) -> tuple[float, float, float]:
        return mean_ci(values, 500, torch.Generator().manual_seed(5), alpha=alpha)

    _, wide_lo, wide_hi = ci(0.01)
    _, narrow_lo, narrow_hi = ci(0.5)
    assert wide_lo < narrow_lo < narrow_hi < wide_hi
    assert ci(0.01) == ci(0.01)


def test_bootstrap_rejects_bad_arguments() -> None:
    with pytest.raises(MetricInputError, match=r"evaluate\.bootstrap"):
        mean_ci(_values(10), n_boot=0, generator=torch.Generator())
    with pytest.raises(MetricInputError, match="1-d"):
        mean_ci(torch.zeros(3, 2), n_boot=10, generator=torch.Generator())
