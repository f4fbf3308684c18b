"""Fréchet distance and kernel (MMD) distance between two sets of features.

The chain is features -> statistics -> metric (as in torch-fidelity), so a caller can cache the
real set's statistics. Everything runs in float64: FD is a difference of large traces and loses
most of its digits in float32.
"""

from __future__ import annotations

import torch
from torch import Tensor

from genpipe.evaluation.metrics._inputs import (
    MetricInputError,
    as_features,
    require_finite,
    same_width,
)


def gaussian_stats(features: Tensor) -> tuple[Tensor, Tensor]:
    """Mean [D] and unbiased covariance [D, D] (float64) of features [N, D]."""
    return _moments(as_features(features, "features", check_finite=False), "features")


def _moments(x: Tensor, name: str) -> tuple[Tensor, Tensor]:
    """One pass, as torchmetrics does (no centred copy of the features): in float64,
    X^T X - n mu mu^T keeps over 10 digits unless a feature's mean exceeds ~1000 times its std.
    """
    n = x.shape[0]
    mu = x.mean(dim=0)
    require_finite(mu, name)  # the mean doubles as the NaN/inf check
    sigma = torch.addmm(torch.outer(mu, mu), x.T, x, beta=-n).div_(n - 1)  # [D, D]
    return mu, sigma


def _trace_sqrt_product(sigma1: Tensor, sigma2: Tensor) -> Tensor:
    """Tr (S1 S2)^½ through a symmetric PSD matrix with the same eigenvalues as S1 S2.

    With S1 = L Lᵀ (Cholesky), Lᵀ S2 L is similar to S1 S2; when S1 is singular (fewer samples
    than features) S1^½ S2 S1^½ from `eigh` serves instead. Either way `eigvalsh` gives real,
    stable eigenvalues where `eigvals(S1 @ S2)` (torchmetrics; pytorch-fid's `sqrtm`) can
    return complex noise for near-singular covariances, and Cholesky is the cheapest route.
    """
    factor, info = torch.linalg.cholesky_ex(sigma1)
    if int(info) == 0:
        middle = factor.T @ sigma2 @ factor
    else:
        eigvals, eigvecs = torch.linalg.eigh(sigma1)
        root = (eigvecs * eigvals.clamp_min(0).sqrt()) @ eigvecs.T
        middle = root @ sigma2 @ root
    middle = (middle + middle.T) / 2  # [D, D], symmetric up to rounding; make it exactly so
    return torch.linalg.eigvalsh(middle).clamp_min(0).sqrt().sum()  # tiny negatives: rounding


def frechet_distance_from_stats(mu1: Tensor, sigma1: Tensor, mu2: Tensor, sigma2: Tensor) -> float:
    """||mu1 - mu2||² + Tr(S1 + S2 - 2 (S1 S2)^½) between two Gaussians (float64 inside)."""
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != (*mu1.shape,) * 2:
        raise MetricInputError(
            f"Gaussian statistics do not match: mu {tuple(mu1.shape)} / {tuple(mu2.shape)}, "
            f"sigma {tuple(sigma1.shape)} / {tuple(sigma2.shape)}"
        )
    mu1, mu2, sigma1, sigma2 = (t.to(torch.float64) for t in (mu1, mu2, sigma1, sigma2))
    trace_sqrt = _trace_sqrt_product(sigma1, sigma2)
    distance = (mu1 - mu2).square().sum() + sigma1.trace() + sigma2.trace() - 2 * trace_sqrt
    return max(float(distance), 0.0)  # identical sets give -1e-13 from rounding, not a real value


def frechet_distance(real: Tensor, fake: Tensor) -> float:
    """FD (FID when the features are Inception's) between features real [N, D] and fake [M, D]."""
    real = as_features(real, "real", check_finite=False)
    fake = as_features(fake, "fake", check_finite=False)
    same_width(real, fake)
    return frechet_distance_from_stats(*_moments(real, "real"), *_moments(fake, "fake"))


def _poly_kernel_sum(x: Tensor, y: Tensor) -> Tensor:
    """Σ_ij (x_i·y_j / d + 1)³: the +1 rides in the matmul, the cube is in place (one buffer)."""
    one = torch.ones(1, 1, dtype=x.dtype)
    return torch.addmm(one, x / x.shape[1], y.T).pow_(3).sum()  # [m, m] -> scalar


def _poly_kernel_trace(x: Tensor) -> Tensor:
    """Σ_i k(x_i, x_i), from row norms rather than the matrix diagonal."""
    return (x.square().sum(dim=1) / x.shape[1] + 1).pow(3).sum()


def _unbiased_mmd2(x: Tensor, y: Tensor) -> Tensor:
    """Unbiased MMD² with the cubic polynomial kernel (Bińkowski et al. 2018), equal-size sets."""
    m = x.shape[0]
    within = _poly_kernel_sum(x, x) - _poly_kernel_trace(x)
    within += _poly_kernel_sum(y, y) - _poly_kernel_trace(y)
    return within / (m * (m - 1)) - 2 * _poly_kernel_sum(x, y) / (m * m)


def kernel_inception_distance(
    real: Tensor,
    fake: Tensor,
    subset_size: int,
    subsets: int,
    generator: torch.Generator | None = None,
) -> tuple[float, float]:
    """KID as (mean, std) of the unbiased MMD² over random subsets, like torch-fidelity.

    `subset_size` is clamped to the smaller set so small test splits still score; each subset
    draws real and fake rows without replacement. Without a `generator` a fixed seed (0) is used:
    the global RNG is never touched, so the result is a pure function of its inputs. The std is
    the population std over subsets, as in torch-fidelity and torchmetrics.
    """
    real = as_features(real, "real")
    fake = as_features(fake, "fake")
    same_width(real, fake)
    if subset_size < 2 or subsets < 1:
        raise MetricInputError(
            f"KID needs subset_size >= 2 and subsets >= 1, got {subset_size} and {subsets}; "
            "check evaluate.kid_subset_size / evaluate.kid_subsets"
        )
    m = min(subset_size, real.shape[0], fake.shape[0])
    if generator is None:
        generator = torch.Generator().manual_seed(0)
    scores = torch.empty(subsets, dtype=torch.float64)
    for s in range(subsets):  # a loop over subsets, not samples: each is three m×m matmuls
        x = real[torch.randperm(real.shape[0], generator=generator)[:m]]
        y = fake[torch.randperm(fake.shape[0], generator=generator)[:m]]
        scores[s] = _unbiased_mmd2(x, y)
    return float(scores.mean()), float(scores.std(correction=0))
