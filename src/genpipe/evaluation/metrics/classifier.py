"""Metrics over the evaluator classifier's softmax outputs on generated images."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from genpipe.evaluation.metrics._inputs import MetricInputError


def _as_probs(probs: Tensor) -> Tensor:
    if probs.ndim != 2 or probs.shape[0] < 1 or probs.shape[1] < 2:
        raise MetricInputError(f"expected class probabilities [N, K>=2], got {tuple(probs.shape)}")
    p = probs.detach().to(device="cpu", dtype=torch.float64)
    if (p < 0).any() or not torch.allclose(p.sum(dim=1), torch.ones(1, dtype=p.dtype), atol=1e-3):
        raise MetricInputError("rows of probs must be softmax outputs (non-negative, summing to 1)")
    return p


def inception_score(probs: Tensor, splits: int = 1) -> float:
    """exp E_x KL(p(y|x) || p(y)), averaged over `splits` consecutive chunks (no shuffling).

    Computed from a domain classifier's probabilities rather than Inception's: on 8x8 digits an
    ImageNet network says nothing. Ranges from 1 (one class or uniform guesses) to K.
    """
    p = _as_probs(probs)
    if not 1 <= splits <= p.shape[0]:
        raise MetricInputError(
            f"inception_score: splits must be in [1, {p.shape[0]}], got {splits}"
        )
    scores = []
    for part in p.chunk(splits, dim=0):
        marginal = part.mean(dim=0, keepdim=True)  # [1, K]
        # xlogy gives 0·log 0 = 0 for confident rows; the marginal is > 0 wherever p is.
        kl = torch.special.xlogy(part, part) - torch.special.xlogy(part, marginal)  # [n, K]
        scores.append(kl.sum(dim=1).mean().exp())
    return float(torch.stack(scores).mean())


def class_coverage(probs: Tensor) -> dict[str, float]:
    """How many classes the generator produces, and how evenly (by argmax prediction).

    class_coverage: share of the K classes predicted at least once; class_entropy: entropy of
    the predicted-class histogram over log K, so 1 means perfectly balanced and 0 one class.
    """
    p = _as_probs(probs)
    n_classes = p.shape[1]
    counts = torch.bincount(p.argmax(dim=1), minlength=n_classes).to(torch.float64)  # [K]
    freq = counts / counts.sum()
    entropy = -torch.special.xlogy(freq, freq).sum()
    return {
        "class_coverage": float((counts > 0).double().mean()),
        "class_entropy": float(entropy / math.log(n_classes)),
    }


def recognition_rate(probs: Tensor, confidence: float) -> float:
    """Share of images the classifier assigns to one class with probability >= `confidence`.

    IS rewards confident and varied predictions together; this asks only "does it look like a
    digit?", per image, so it reads directly as "x% of the samples are recognisable".
    """
    if not 0 < confidence <= 1:
        raise MetricInputError(f"recognition_rate: confidence must be in (0, 1], got {confidence}")
    p = _as_probs(probs)
    return float((p.max(dim=1).values >= confidence).double().mean())
