"""benchmarks.verdict_seeds: per-seed verdicts as register decides them, and pooled figures."""

from __future__ import annotations

import shlex

import pytest

from benchmarks.verdict_seeds import (
    markdown,
    pooled,
    seed_spreads,
    seed_summary,
    tie_rule_command,
    with_seed,
)
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


FD_PSNR = {"generation": "fd", "restoration": "psnr"}


def three_seeds() -> dict:
    """VAE FD sd 1.0, GAN FD sd 2.0; VAE PSNR sd 0.1, GAN PSNR sd 0.2 (over three seeds)."""
    return pooled(
        {
            0: seed_summary(_report(3.0, 6.0, 20.0, 18.0)),
            1: seed_summary(_report(4.0, 8.0, 20.1, 18.2)),
            2: seed_summary(_report(5.0, 10.0, 20.2, 18.4)),
        }
    )


def test_the_seed_spread_is_the_rms_of_the_two_families_sds() -> None:
    spreads = seed_spreads(three_seeds())
    assert spreads["generation"] == pytest.approx(2.5**0.5)  # sqrt((1 + 4) / 2)
    assert spreads["restoration"] == pytest.approx(0.025**0.5)


def test_the_summary_prints_the_exact_command_register_reads() -> None:
    text = tie_rule_command("digits", three_seeds(), FD_PSNR)
    assert text.splitlines()[-1] == (
        "  dvc exp run -S register.tie_rule=seed_spread_keeps_champion "
        "-S register.seed_spread.dataset=digits -S register.seed_spread.generation=1.58 "
        "-S register.seed_spread.restoration=0.158"
    )
    assert "- generation: FD sd 1.58 (VAE 1, GAN 2; 3 seeds)" in text


def test_the_command_leaves_out_what_register_cannot_use() -> None:
    one_seed = pooled({0: seed_summary(_report(3.0, 6.0, 20.0, 18.0))})
    assert "dvc exp run" not in tie_rule_command("digits", one_seed, FD_PSNR)
    text = tie_rule_command("folder-my pics", three_seeds(), {**FD_PSNR, "restoration": "ssim"})
    assert "register.restoration_metric is ssim: not usable" in text
    argv = shlex.split(text.splitlines()[-1])
    assert argv[argv.index("-S", 4) + 1] == "register.seed_spread.dataset='folder-my pics'"
    assert not any(arg.startswith("register.seed_spread.restoration") for arg in argv)
