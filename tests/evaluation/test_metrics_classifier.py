"""Inception score and class coverage from classifier probabilities."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torchmetrics.image.inception import InceptionScore

from genpipe.evaluation.metrics import (
    MetricInputError,
    class_coverage,
    inception_score,
    recognition_rate,
)

pytestmark = [
    pytest.mark.filterwarnings("ignore:Metric `InceptionScore`"),
    pytest.mark.filterwarnings("ignore:std\\(\\)"),  # torchmetrics' std over a single split
]


class _LogProbs(nn.Module):
    """torchmetrics applies softmax to its 'features'; softmax(log p) = p."""

    def forward(self, probs: torch.Tensor) -> torch.Tensor:
        return probs.log()


def _probs(n: int, k: int, seed: int, sharpness: float = 3.0) -> torch.Tensor:
    logits = sharpness * torch.randn(n, k, generator=torch.Generator().manual_seed(seed))
    return logits.double().softmax(dim=1)


def test_inception_score_matches_torchmetrics() -> None:
    probs = _probs(200, 10, seed=0)
    reference = InceptionScore(feature=_LogProbs(), splits=1)
    reference.update(probs)
    expected, _ = reference.compute()
    assert inception_score(probs) == pytest.approx(float(expected), rel=1e-6)


def test_inception_score_closed_forms() -> None:
    k = 7
    confident_and_balanced = torch.eye(k, dtype=torch.float64).repeat(3, 1)  # [21, 7] one-hot
    assert inception_score(confident_and_balanced) == pytest.approx(k)
    one_class = torch.zeros(12, k, dtype=torch.float64)
    one_class[:, 2] = 1
    assert inception_score(one_class) == pytest.approx(1.0)
    uniform = torch.full((12, k), 1 / k, dtype=torch.float64)
    assert inception_score(uniform) == pytest.approx(1.0)


def test_inception_score_averages_consecutive_splits() -> None:
    probs = _probs(90, 5, seed=1)
    by_hand = sum(inception_score(part) for part in probs.chunk(3)) / 3
    assert inception_score(probs, splits=3) == pytest.approx(by_hand)
    assert inception_score(probs, splits=3) != pytest.approx(inception_score(probs))


def test_class_coverage_counts_and_balances_predicted_classes() -> None:
    k = 4
    balanced = torch.eye(k, dtype=torch.float64).repeat(5, 1)
    assert class_coverage(balanced) == {"class_coverage": 1.0, "class_entropy": pytest.approx(1.0)}
    two_classes = torch.eye(k, dtype=torch.float64)[torch.tensor([0, 0, 0, 1])]  # 3:1 split
    expected_entropy = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25)) / math.log(k)
    scores = class_coverage(two_classes)
    assert scores["class_coverage"] == 0.5
    assert scores["class_entropy"] == pytest.approx(expected_entropy)
    collapsed = torch.eye(k, dtype=torch.float64)[torch.zeros(9, dtype=torch.long)]
    assert class_coverage(collapsed) == {"class_coverage": 0.25, "class_entropy": 0.0}


def test_recognition_rate_counts_confident_rows_at_the_threshold() -> None:
    probs = torch.tensor(
        [
            [0.95, 0.05, 0.0],  # recognised
            [0.9, 0.1, 0.0],  # exactly at the threshold: recognised
            [0.5, 0.3, 0.2],  # unsure
            [0.0, 0.05, 0.95],  # recognised, another class
        ],
        dtype=torch.float64,
    )
    assert recognition_rate(probs, 0.9) == 0.75
    assert recognition_rate(probs, 0.96) == 0.0
    assert recognition_rate(probs, 0.5) == 1.0


def test_classifier_metrics_reject_non_probabilities() -> None:
    with pytest.raises(MetricInputError, match="softmax"):
        inception_score(torch.randn(10, 3))
    with pytest.raises(MetricInputError, match="splits"):
        inception_score(_probs(4, 3, seed=2), splits=5)
    with pytest.raises(MetricInputError, match="softmax"):
        recognition_rate(torch.randn(10, 3), 0.9)
    with pytest.raises(MetricInputError, match="confidence"):
        recognition_rate(_probs(4, 3, seed=2), 0.0)
