"""benchmarks.verdict_seeds: per-seed verdicts as register decides them, and pooled figures."""

from __future__ import annotations

import pytest

from benchmarks.verdict_seeds import markdown, pooled, seed_summary, with_seed
from tests.params import params_with


def _stat(value: float, half: float) -> dict:
    return {"value": value, "ci": [value - half, value + half]}


def _report(vae_fd: float, gan_fd: float, vae_psnr: float, gan_psnr: float) -> dict:
    def source(fd: float) -> dict:
        return {"fd": _stat(fd, 0.3), "recognised": _stat(0.5, 0.05)}

    def restoration(psnr: float, method: str) -> dict:
        return {"best_method": method, "methods": {method: {"mean": {"psnr": _stat(psnr, 0.2)}}}}

    return {
        "generation": {"vae": source(vae_fd), "gan": source(gan_fd), "real": source(0.3)},
        "restoration": {
            "vae": restoration(vae_psnr, "vae_latent_search"),
            "gan": restoration(gan_psnr, "gan_latent_search"),
        },
    }


def test_seed_summary_picks_the_lower_fd_and_higher_psnr_and_flags_ties() -> None:
    s = seed_summary(_report(3.0, 6.0, 20.0, 19.9))
    assert s["generation"]["winner"] == "vae" and s["generation"]["margin"] == pytest.approx(3.0)
    assert not s["generation"]["tie"]
    assert s["restoration"]["winner"] == "vae" and s["restoration"]["tie"]  # CIs overlap
    assert s["generation"]["floor"] == 0.3


def test_pooled_counts_wins_and_pools_mean_and_sd_over_seeds() -> None:
    seeds = {
        0: seed_summary(_report(3.0, 6.0, 20.0, 18.0)),
        1: seed_summary(_report(5.0, 4.0, 21.0, 18.0)),
        2: seed_summary(_report(4.0, 8.0, 22.0, 18.0)),
    }
    pool = pooled(seeds)
    assert pool["generation"]["wins"] == {"vae": 2, "gan": 1}
    assert pool["generation"]["stats"]["vae"]["mean"] == pytest.approx(4.0)
    assert pool["generation"]["stats"]["vae"]["sd"] == pytest.approx(1.0)
    assert pool["generation"]["gan_minus_vae"]["mean"] == pytest.approx(2.0)
    assert pool["restoration"]["wins"] == {"vae": 3, "gan": 0}
    text = markdown("digits", seeds, pool)
    assert "generation: VAE wins in 2/3 seeds" in text
    assert "restoration: VAE wins in 3/3 seeds" in text
    assert "| 1 | 5.00 [4.70, 5.30] | 4.00 [3.70, 4.30] | 0.30 | GAN (1.00) |" in text


def test_with_seed_changes_only_the_training_seed() -> None:
    base = params_with()
    seeded = with_seed(base, 7)
    assert seeded.train.seed == 7 and seeded.train.batch_size == base.train.batch_size
    assert seeded.vae == base.vae and seeded.evaluate == base.evaluate
