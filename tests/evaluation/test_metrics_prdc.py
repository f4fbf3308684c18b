"""PRDC against a brute-force reference written from the papers' definitions."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial.distance import cdist
from sklearn.neighbors import NearestNeighbors

from genpipe.evaluation.metrics import MetricInputError, prdc


def _reference_prdc(real: np.ndarray, fake: np.ndarray, k: int) -> dict[str, float]:
    """Kynkäänniemi 2019 (precision, recall) and Naeem 2020 (density, coverage), literally."""

    def radii(x: np.ndarray) -> np.ndarray:
        # k+1 neighbours: the query point itself is returned first at distance 0.
        distances, _ = NearestNeighbors(n_neighbors=k + 1).fit(x).kneighbors(x)
        return distances[:, -1]

    r_real, r_fake = radii(real), radii(fake)
    d = cdist(real, fake)  # [N, M]
    n_real, n_fake = d.shape
    precision = np.mean([any(d[i, j] < r_real[i] for i in range(n_real)) for j in range(n_fake)])
    recall = np.mean([any(d[i, j] < r_fake[j] for j in range(n_fake)) for i in range(n_real)])
    density = sum((d[i, j] < r_real[i]) for i in range(n_real) for j in range(n_fake)) / (
        k * n_fake
    )
    coverage = np.mean([min(d[i, :]) < r_real[i] for i in range(n_real)])
    return {"precision": precision, "recall": recall, "density": density, "coverage": coverage}


@pytest.fixture
def features() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    real = torch.randn(120, 6, generator=g)
    fake = 1.3 * torch.randn(90, 6, generator=g) + 0.4  # overlapping but different: all four < 1
    return real, fake


@pytest.mark.parametrize("k", [1, 3, 5])
def test_prdc_matches_brute_force_reference(features, k: int) -> None:
    real, fake = features
    expected = _reference_prdc(real.double().numpy(), fake.double().numpy(), k)
    got = prdc(real, fake, k=k)
    assert got.keys() == expected.keys()
    for name, value in expected.items():
        assert got[name] == pytest.approx(value, rel=1e-4), name
    assert 0 < got["precision"] < 1 and 0 < got["coverage"] < 1


def test_prdc_does_not_depend_on_chunk_size(features) -> None:
    real, fake = features
    assert prdc(real, fake, k=4, chunk_size=7) == prdc(real, fake, k=4, chunk_size=4096)


def test_prdc_of_a_set_with_itself_is_perfect() -> None:
    real = torch.randn(200, 8, generator=torch.Generator().manual_seed(1))
    scores = prdc(real, real.clone(), k=5)
    assert scores["precision"] == scores["recall"] == scores["coverage"] == 1.0
    # Ball i holds x_i itself and the k-1 neighbours strictly inside its k-th neighbour's
    # distance, so N·k memberships in all and density (N·k) / (k·N) = 1. The k-th neighbour
    # itself sits exactly on the boundary, and rounding (d(a, b) vs d(b, a) from a matmul)
    # can put a few of those N ties inside; the reference code has the same ties.
    assert scores["density"] == pytest.approx(1.0, abs=0.01)


def test_prdc_of_disjoint_sets_is_zero() -> None:
    real = torch.randn(50, 4, generator=torch.Generator().manual_seed(2))
    scores = prdc(real, real + 100.0, k=3)
    assert scores == {"precision": 0.0, "recall": 0.0, "density": 0.0, "coverage": 0.0}


def test_prdc_needs_more_samples_than_k() -> None:
    real = torch.randn(5, 4)
    with pytest.raises(MetricInputError, match="at least 6 samples"):
        prdc(real, real, k=5)
