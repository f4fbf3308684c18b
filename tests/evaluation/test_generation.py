from __future__ import annotations

import pytest
import torch

from genpipe.evaluation.features import embed, model_sampler, pool_sampler
from genpipe.evaluation.generation import (
    GENERATION_METRICS,
    GenerationProtocol,
    evaluate_source,
    select_snapshot,
)


def protocol(draws: int = 3) -> GenerationProtocol:
    return GenerationProtocol(
        n_samples=60,
        draws=draws,
        kid_subset_size=1000,
        kid_subsets=3,
        prdc_k=5,
        bootstrap=50,
        seed=0,
        recognition_confidence=0.9,
    )


def noise_sampler(n: int, generator: torch.Generator) -> torch.Tensor:
    return torch.rand(n, 1, 8, 8, generator=generator)


def test_embed_batches_give_the_same_features(tiny_classifier, digits_test) -> None:
    whole = embed(tiny_classifier, digits_test[:50])
    batched = embed(tiny_classifier, digits_test[:50], batch_size=7)
    assert whole.features.shape == (50, 16) and whole.probs.shape == (50, 10)
    assert torch.allclose(whole.features, batched.features, atol=1e-5)
    assert torch.allclose(whole.probs.sum(1), torch.ones(50), atol=1e-5)


def test_real_images_score_better_than_noise(tiny_classifier, digits_splits) -> None:
    reference = embed(tiny_classifier, digits_splits["test"].as_float())
    train_pool = pool_sampler(digits_splits["train"].as_float())
    real, images = evaluate_source(train_pool, tiny_classifier, reference, protocol())
    noise, _ = evaluate_source(noise_sampler, tiny_classifier, reference, protocol())
    assert set(real) == set(GENERATION_METRICS)
    assert images.shape == (60, 1, 8, 8)
    assert real["fd"]["value"] < noise["fd"]["value"]
    assert real["kid"]["value"] < noise["kid"]["value"]
    assert real["precision"]["value"] > noise["precision"]["value"]
    for stats in (real, noise):
        for stat in stats.values():
            lo, hi = stat["ci"]
            assert lo <= stat["value"] <= hi


def test_a_single_draw_has_no_ci(tiny_classifier, digits_test) -> None:
    reference = embed(tiny_classifier, digits_test)
    scores, _ = evaluate_source(noise_sampler, tiny_classifier, reference, protocol(draws=1))
    assert all(s["ci"] is None for s in scores.values())


def test_sources_are_deterministic(tiny_generator, tiny_classifier, digits_test) -> None:
    reference = embed(tiny_classifier, digits_test)
    sampler = model_sampler(tiny_generator, batch_size=16)
    a, images_a = evaluate_source(sampler, tiny_classifier, reference, protocol(draws=2))
    b, images_b = evaluate_source(sampler, tiny_classifier, reference, protocol(draws=2))
    assert torch.equal(images_a, images_b)
    assert a == b


def test_pool_sampler_draws_distinct_images() -> None:
    pool = torch.arange(10.0).view(10, 1, 1, 1)
    drawn = pool_sampler(pool)(10, torch.Generator().manual_seed(0))
    assert sorted(drawn.flatten().tolist()) == list(range(10))
    with pytest.raises(ValueError, match="cannot draw 11"):
        pool_sampler(pool)(11, torch.Generator())


def test_snapshot_selection_picks_the_lowest_validation_fd(tiny_classifier, digits_splits) -> None:
    validation = embed(tiny_classifier, digits_splits["val"].as_float())
    candidates = {
        "epoch_0001": noise_sampler,
        "epoch_0002": pool_sampler(digits_splits["train"].as_float()),
        "epoch_0003": noise_sampler,
    }
    best, fds = select_snapshot(candidates, tiny_classifier, validation, n_samples=100, seed=0)
    assert best == "epoch_0002"
    assert set(fds) == set(candidates) and fds["epoch_0002"] < fds["epoch_0001"]
    # Ties go to the later snapshot (further trained, same quality).
    tie, _ = select_snapshot(
        {"epoch_0001": noise_sampler, "epoch_0003": noise_sampler},
        tiny_classifier,
        validation,
        100,
        0,
    )
    assert tie == "epoch_0003"
