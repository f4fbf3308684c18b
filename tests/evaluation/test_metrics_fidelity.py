"""FD and KID against torchmetrics and against closed forms."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch
from torch import nn
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.image.kid import KernelInceptionDistance, poly_mmd

from genpipe.evaluation.metrics import (
    MetricInputError,
    frechet_distance,
    frechet_distance_from_stats,
    gaussian_stats,
    kernel_inception_distance,
)

# torchmetrics' KID warns that it buffers all features; these tests feed a few hundred rows.
pytestmark = pytest.mark.filterwarnings("ignore:Metric `Kernel Inception Distance`")


class _Features(nn.Module):
    """Lets torchmetrics' metric classes take precomputed features as their 'images'."""

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.num_features = num_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def _features(n: int, d: int, seed: int, shift: float = 0.0) -> torch.Tensor:
    """n samples of one correlated, non-isotropic Gaussian per (d, shift); `seed` picks samples."""
    mixing = torch.randn(d, d, generator=torch.Generator().manual_seed(d)) / d**0.5
    samples = torch.randn(n, d, generator=torch.Generator().manual_seed(seed))
    return (samples @ mixing + shift).double()


def test_fd_matches_torchmetrics_on_random_features() -> None:
    real, fake = _features(600, 32, seed=1), _features(500, 32, seed=2, shift=0.3)
    reference = FrechetInceptionDistance(feature=_Features(32))
    reference.update(real, real=True)
    reference.update(fake, real=False)
    expected = float(reference.compute())
    assert frechet_distance(real, fake) == pytest.approx(expected, rel=1e-4)


def test_fd_from_stats_matches_scipy_sqrtm_for_non_commuting_covariances() -> None:
    g = torch.Generator().manual_seed(3)
    a, b = torch.randn(6, 6, generator=g).double(), torch.randn(6, 6, generator=g).double()
    s1, s2 = a @ a.T + 0.1 * torch.eye(6), b @ b.T + 0.1 * torch.eye(6)
    mu1, mu2 = torch.randn(6, generator=g).double(), torch.randn(6, generator=g).double()
    cross = scipy.linalg.sqrtm(s1.numpy() @ s2.numpy()).real
    expected = float((mu1 - mu2).square().sum()) + np.trace(s1.numpy() + s2.numpy() - 2 * cross)
    assert frechet_distance_from_stats(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-8)


def test_fd_of_identical_sets_is_zero() -> None:
    real = _features(300, 16, seed=4)
    assert frechet_distance(real, real.clone()) == pytest.approx(0.0, abs=1e-9)


def test_fd_of_mean_shift_is_squared_shift() -> None:
    real = _features(400, 16, seed=5)
    shift = torch.linspace(-1, 1, 16, dtype=torch.float64)
    # Same samples shifted: covariances are equal, so FD = ||shift||² exactly.
    assert frechet_distance(real, real + shift) == pytest.approx(float(shift @ shift), rel=1e-9)


def test_fd_keeps_its_digits_when_feature_means_dwarf_their_spread() -> None:
    real = _features(500, 16, seed=17) + 1000.0  # one-pass covariance: mean 1000x the std
    shift = torch.full((16,), 0.5, dtype=torch.float64)
    assert frechet_distance(real, real + shift) == pytest.approx(16 * 0.25, rel=1e-6)


def test_fd_with_fewer_samples_than_features_uses_the_singular_path() -> None:
    real = _features(10, 16, seed=16)  # rank-9 covariance: no Cholesky factor exists
    shift = torch.full((16,), 0.5, dtype=torch.float64)
    assert frechet_distance(real, real + shift) == pytest.approx(16 * 0.25, rel=1e-6)
    scaled = frechet_distance(real, 3 * real)
    mu, sigma = gaussian_stats(real)
    assert scaled == pytest.approx(float(4 * (mu @ mu + sigma.trace())), rel=1e-6)


def test_fd_of_scaled_covariance_has_closed_form() -> None:
    real = _features(400, 16, seed=6)
    scale = 2.5
    mu, sigma = gaussian_stats(real)
    # fake = scale·real: Σ_f = scale²Σ, so Tr(Σ + Σ_f - 2(ΣΣ_f)^½) = (1 - scale)² Tr Σ.
    expected = float((1 - scale) ** 2 * (mu @ mu + sigma.trace()))
    assert frechet_distance(real, scale * real) == pytest.approx(expected, rel=1e-9)


def test_fd_of_two_gaussian_samples_approaches_population_value() -> None:
    g = torch.Generator().manual_seed(7)
    d, n = 8, 20_000
    real = torch.randn(n, d, generator=g)
    fake = 1 + 2 * torch.randn(n, d, generator=g)  # N(1, 4I): FD = d·1 + d·(2 - 1)² = 2d
    assert frechet_distance(real, fake) == pytest.approx(2 * d, rel=0.03)


def test_gaussian_stats_match_numpy() -> None:
    x = _features(50, 5, seed=8)
    mu, sigma = gaussian_stats(x)
    np.testing.assert_allclose(mu.numpy(), x.numpy().mean(0), rtol=1e-12)
    np.testing.assert_allclose(sigma.numpy(), np.cov(x.numpy(), rowvar=False), rtol=1e-10)


def test_kid_on_full_sets_matches_torchmetrics() -> None:
    real, fake = _features(300, 16, seed=9), _features(300, 16, seed=10, shift=0.4)
    # subset_size = n: every subset is the whole set, so torchmetrics' own RNG doesn't matter.
    reference = KernelInceptionDistance(feature=_Features(16), subsets=2, subset_size=300)
    reference.update(real, real=True)
    reference.update(fake, real=False)
    expected_mean, _ = reference.compute()
    mean, std = kernel_inception_distance(real, fake, subset_size=300, subsets=2)
    assert mean == pytest.approx(float(expected_mean), rel=1e-4)
    assert std == pytest.approx(0.0, abs=1e-12)


def test_kid_subsets_match_torchmetrics_poly_mmd_on_the_same_draws() -> None:
    real, fake = _features(250, 16, seed=11), _features(200, 16, seed=12, shift=0.2)
    mean, std = kernel_inception_distance(
        real, fake, subset_size=80, subsets=7, generator=torch.Generator().manual_seed(5)
    )
    g = torch.Generator().manual_seed(5)  # replay the documented draw order: real, then fake
    scores = torch.stack(
        [
            poly_mmd(
                real[torch.randperm(250, generator=g)[:80]],
                fake[torch.randperm(200, generator=g)[:80]],
            )
            for _ in range(7)
        ]
    )
    assert mean == pytest.approx(float(scores.mean()), rel=1e-4)
    assert std == pytest.approx(float(scores.std(unbiased=False)), rel=1e-4)


def test_kid_clamps_subset_size_to_small_splits_and_is_deterministic() -> None:
    real, fake = _features(40, 8, seed=13), _features(30, 8, seed=14, shift=1.0)
    first = kernel_inception_distance(real, fake, subset_size=1000, subsets=5)
    assert first == kernel_inception_distance(real, fake, subset_size=1000, subsets=5)
    assert first[0] > 0
    full = kernel_inception_distance(real[:30], fake, subset_size=30, subsets=1)
    assert full[0] != first[0]  # subsets of 30 drawn from 40 real rows, not all of them


def test_kid_of_identical_distributions_is_zero_in_expectation() -> None:
    # The estimator is unbiased: over independent pairs of samples from one distribution its
    # mean sits within a few standard errors of 0 (the biased V-statistic would be clearly > 0).
    values = torch.tensor(
        [
            kernel_inception_distance(
                _features(100, 8, seed=100 + 2 * i), _features(100, 8, seed=101 + 2 * i), 100, 1
            )[0]
            for i in range(40)
        ]
    )
    standard_error = values.std() / len(values) ** 0.5
    assert abs(float(values.mean())) < 3 * float(standard_error)
    shifted = kernel_inception_distance(_features(100, 8, 1), _features(100, 8, 2, 0.5), 100, 1)
    assert shifted[0] > 10 * float(standard_error)


def test_metrics_reject_unusable_inputs() -> None:
    x = _features(10, 4, seed=15)
    with pytest.raises(MetricInputError, match="at least 2"):
        frechet_distance(x[:1], x)
    with pytest.raises(MetricInputError, match="width"):
        frechet_distance(x, x[:, :3])
    broken = x.clone()
    broken[3, 1] = float("nan")
    with pytest.raises(MetricInputError, match="fake: features contain NaN"):
        frechet_distance(x, broken)
    with pytest.raises(MetricInputError, match="NaN"):
        kernel_inception_distance(broken, x, subset_size=5, subsets=1)
    with pytest.raises(MetricInputError, match="kid_subset_size"):
        kernel_inception_distance(x, x, subset_size=1, subsets=3)
