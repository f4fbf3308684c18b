"""Generation quality of one image source against a fixed real reference set, with CIs.

A source (VAE, GAN, or real train images for the floor) is scored by repeated draws: each draw
is n fresh samples embedded by the evaluator and compared with the reference features. The value
reported is the mean over draws and its CI the percentile bootstrap of that mean. Draws avoid
the bias that resampling with replacement puts into KID (duplicate pairs) and PRDC (zero-radius
neighbours). The reference (test split) is fixed, so the CI covers sampling variability of the
source, which is what differs between two models scored on the same test set.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import get_args

import torch

from genpipe.config.evaluate import GenerationMetric
from genpipe.evaluation import metrics
from genpipe.evaluation.features import Embedded, Sampler, embed
from genpipe.models.classifier import Classifier

log = logging.getLogger(__name__)

GENERATION_METRICS: tuple[str, ...] = get_args(GenerationMetric)  # one list, in config


@dataclass(frozen=True)
class GenerationProtocol:
    n_samples: int
    draws: int
    kid_subset_size: int
    kid_subsets: int
    prdc_k: int
    bootstrap: int
    seed: int
    recognition_confidence: float  # "recognised": the evaluator's top class has p >= this


def score_set(
    reference: Embedded, fake: Embedded, protocol: GenerationProtocol, generator: torch.Generator
) -> dict[str, float]:
    """Every generation metric for one set of samples against the reference set."""
    kid, _ = metrics.kernel_inception_distance(
        reference.features, fake.features, protocol.kid_subset_size, protocol.kid_subsets, generator
    )
    return {
        "fd": metrics.frechet_distance(reference.features, fake.features),
        "kid": kid,
        **metrics.prdc(reference.features, fake.features, k=protocol.prdc_k),
        "is": metrics.inception_score(fake.probs),
        **metrics.class_coverage(fake.probs),
        "recognised": metrics.recognition_rate(fake.probs, protocol.recognition_confidence),
    }


def summarise(draws: list[dict[str, float]], bootstrap: int, generator: torch.Generator) -> dict:
    """{metric: {"value": mean over draws, "ci": [lo, hi] or None with a single draw}}."""
    out: dict[str, dict] = {}
    for name in GENERATION_METRICS:
        values = torch.tensor([d[name] for d in draws], dtype=torch.float64)
        if len(values) < 2:
            out[name] = {"value": float(values[0]), "ci": None}
            continue
        mean, lo, hi = metrics.mean_ci(values, bootstrap, generator)
        out[name] = {"value": mean, "ci": [lo, hi]}
    return out


def evaluate_source(
    sample: Sampler, classifier: Classifier, reference: Embedded, protocol: GenerationProtocol
) -> tuple[dict, torch.Tensor]:
    """(metrics with CIs, the first draw's images for sample grids) for one image source."""
    gen = torch.Generator().manual_seed(protocol.seed)
    scores, first = [], None
    for _ in range(protocol.draws):
        images = sample(protocol.n_samples, gen)
        first = images if first is None else first
        scores.append(score_set(reference, embed(classifier, images), protocol, gen))
    assert first is not None
    return summarise(scores, protocol.bootstrap, gen), first


def select_snapshot(
    candidates: dict[str, Sampler],
    classifier: Classifier,
    validation: Embedded,
    n_samples: int,
    seed: int,
) -> tuple[str, dict[str, float]]:
    """The candidate with the lowest FD against the validation split (ties: the later one).

    Choosing on val keeps the test split unseen by every decision, so test numbers stay honest.
    """
    fds: dict[str, float] = {}
    for name, sample in candidates.items():
        images = sample(n_samples, torch.Generator().manual_seed(seed))  # same latents for all
        fds[name] = metrics.frechet_distance(
            validation.features, embed(classifier, images).features
        )
        log.info("snapshot %s: validation FD %.4f", name, fds[name])
    best = min(reversed(list(fds)), key=fds.__getitem__)
    return best, fds
