"""Precision/recall (Kynkäänniemi et al. 2019) and density/coverage (Naeem et al. 2020).

Each real (fake) sample owns a ball whose radius is the distance to its k-th nearest neighbour in
its own set. The reference code (clovaai/generative-evaluation-prdc) holds three full N×N
distance matrices; here distances are made a chunk of rows at a time and reduced at once, so
memory is O(chunk_size · N), never N². Squared distances are compared
with squared radii (same order, no sqrt), in float64 so that ties match the reference.
"""

from __future__ import annotations

import torch
from torch import Tensor

from genpipe.evaluation.metrics._inputs import MetricInputError, as_features, same_width


def _squared_distances(x: Tensor, y: Tensor, y_sq: Tensor) -> Tensor:
    """||x_i - y_j||² [len(x), len(y)] via one matmul into a single buffer.

    (|x|² + |y|²) is summed first so that d(a, b) and d(b, a) round alike: a set scored
    against itself then reproduces its own k-th-neighbour ties exactly.
    """
    d2 = x.square().sum(dim=1, keepdim=True) + y_sq.unsqueeze(0)  # [c, N]
    return d2.addmm_(x, y.T, alpha=-2.0).clamp_min_(0.0)


def _kth_neighbour_radii_sq(x: Tensor, k: int, chunk_size: int) -> Tensor:
    """Squared distance from each row to its k-th nearest other row [N].

    The row itself is at distance 0 and is counted, hence the (k+1)-th smallest, exactly as the
    reference does (a duplicate row therefore also counts as a neighbour).
    """
    x_sq = x.square().sum(dim=1)
    radii = torch.empty(x.shape[0], dtype=x.dtype)
    for start in range(0, x.shape[0], chunk_size):
        d2 = _squared_distances(x[start : start + chunk_size], x, x_sq)  # [c, N]
        # topk(k+1), not kthvalue: much faster on the CPU for small k.
        radii[start : start + chunk_size] = d2.topk(k + 1, dim=1, largest=False).values[:, -1]
    return radii


def prdc(real: Tensor, fake: Tensor, k: int = 5, chunk_size: int = 256) -> dict[str, float]:
    """Precision, recall, density and coverage of fake features [M, D] against real [N, D].

    precision: share of fakes inside at least one real ball; recall: share of reals inside at
    least one fake ball; density: mean number of real balls holding a fake, over k; coverage:
    share of real balls holding at least one fake. Comparisons are strict (<), as published.
    `chunk_size` rows at a time: 256 keeps each [chunk, N] block near the CPU caches (larger
    blocks cost more CPU time: benchmarks/metrics.py).
    """
    if k < 1 or chunk_size < 1:
        raise MetricInputError(
            f"PRDC needs k >= 1 and chunk_size >= 1, got {k} and {chunk_size}; "
            "check evaluate.prdc_k"
        )
    real = as_features(real, "real", min_rows=k + 1)
    fake = as_features(fake, "fake", min_rows=k + 1)
    same_width(real, fake)
    real_radii = _kth_neighbour_radii_sq(real, k, chunk_size)  # [N]
    fake_radii = _kth_neighbour_radii_sq(fake, k, chunk_size)  # [M]

    real_sq = real.square().sum(dim=1)
    balls_per_fake = torch.empty(fake.shape[0], dtype=torch.int64)  # real balls holding each fake
    real_recalled = torch.zeros(real.shape[0], dtype=torch.bool)  # real inside some fake ball
    nearest_fake = torch.full((real.shape[0],), torch.inf, dtype=torch.float64)
    for start in range(0, fake.shape[0], chunk_size):
        stop = start + chunk_size
        d2 = _squared_distances(fake[start:stop], real, real_sq)  # [c, N]
        balls_per_fake[start:stop] = (d2 < real_radii).sum(dim=1, dtype=torch.int32)  # 2x int64
        real_recalled |= (d2 < fake_radii[start:stop, None]).any(dim=0)
        nearest_fake = torch.minimum(nearest_fake, d2.amin(dim=0))

    return {
        "precision": float((balls_per_fake > 0).double().mean()),
        "recall": float(real_recalled.double().mean()),
        "density": float(balls_per_fake.double().sum() / (k * fake.shape[0])),
        "coverage": float((nearest_fake < real_radii).double().mean()),
    }
