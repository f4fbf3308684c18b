"""genpipe.sweeps.seeds: per-seed verdicts from headline metrics, pooled over a seed sweep."""

from __future__ import annotations

import shlex

import pytest

from genpipe.sweeps.plan import Member
from genpipe.sweeps.report import MemberResult
from genpipe.sweeps.seeds import (
    markdown,
    pooled,
    seed_groups,
    seed_spreads,
    seed_summary,
    seeds_report,
    tie_rule_command,
)


def _stat(family: str, value: float, half: float) -> dict:
    return {family: value, f"{family}_ci_low": value - half, f"{family}_ci_high": value + half}


def _metrics(vae_fd: float, gan_fd: float, vae_psnr: float, gan_psnr: float) -> dict:
    """data/metrics.json as decide writes it."""
    return {
        "generation": {
            "winner": "vae" if vae_fd <= gan_fd else "gan",
            "fd": {"real": 0.3, **_stat("vae", vae_fd, 0.3), **_stat("gan", gan_fd, 0.3)},
        },
        "restoration": {"psnr": {**_stat("vae", vae_psnr, 0.2), **_stat("gan", gan_psnr, 0.2)}},
    }


def test_seed_summary_picks_the_lower_fd_and_higher_psnr_and_flags_ties() -> None:
    s = seed_summary(_metrics(3.0, 6.0, 20.0, 19.9))
    assert s["generation"]["winner"] == "vae" and s["generation"]["margin"] == pytest.approx(3.0)
    assert not s["generation"]["tie"]
    assert s["restoration"]["winner"] == "vae" and s["restoration"]["tie"]  # CIs overlap
    assert s["generation"]["floor"] == 0.3


def test_pooled_counts_wins_and_pools_mean_and_sd_over_seeds() -> None:
    seeds = {
        0: seed_summary(_metrics(3.0, 6.0, 20.0, 18.0)),
        1: seed_summary(_metrics(5.0, 4.0, 21.0, 18.0)),
        2: seed_summary(_metrics(4.0, 8.0, 22.0, 18.0)),
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
    assert "floor 0.30: VAE 13.33x, GAN 20.00x" in text


FD_PSNR = {"generation": "fd", "restoration": "psnr"}


def three_seeds() -> dict:
    """VAE FD sd 1.0, GAN FD sd 2.0; VAE PSNR sd 0.1, GAN PSNR sd 0.2 (over three seeds)."""
    return pooled(
        {
            0: seed_summary(_metrics(3.0, 6.0, 20.0, 18.0)),
            1: seed_summary(_metrics(4.0, 8.0, 20.1, 18.2)),
            2: seed_summary(_metrics(5.0, 10.0, 20.2, 18.4)),
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
    one_seed = pooled({0: seed_summary(_metrics(3.0, 6.0, 20.0, 18.0))})
    assert "dvc exp run" not in tie_rule_command("digits", one_seed, FD_PSNR)
    text = tie_rule_command("folder-my pics", three_seeds(), {**FD_PSNR, "restoration": "ssim"})
    assert "register.restoration_metric is ssim: not usable" in text
    argv = shlex.split(text.splitlines()[-1])
    assert argv[argv.index("-S", 4) + 1] == "register.seed_spread.dataset='folder-my pics'"
    assert not any(arg.startswith("register.seed_spread.restoration") for arg in argv)


def _result(overrides: tuple[str, ...], outcome: str, metrics: dict) -> MemberResult:
    return MemberResult(Member("-".join(overrides), overrides, "decide"), outcome, metrics=metrics)


def test_a_sweep_pools_seeds_per_group_and_leaves_out_failed_members() -> None:
    results = [
        _result(("train.seed=0", "vae.lr=0.001"), "ran", _metrics(3.0, 6.0, 20.0, 18.0)),
        _result(("train.seed=1", "vae.lr=0.001"), "held", _metrics(4.0, 8.0, 20.1, 18.2)),
        _result(("train.seed=2", "vae.lr=0.001"), "failed", {}),
        _result(("train.seed=0", "vae.lr=0.002"), "ran", _metrics(5.0, 6.0, 20.0, 18.0)),
        _result(("vae.lr=0.003",), "ran", _metrics(5.0, 6.0, 20.0, 18.0)),  # no seed: not pooled
    ]
    groups = seed_groups(results)
    assert {k: sorted(v) for k, v in groups.items()} == {
        ("vae.lr=0.001",): [0, 1],
        ("vae.lr=0.002",): [0],
    }
    text = seeds_report("digits", results, FD_PSNR)
    assert "With vae.lr=0.001:" in text and "VAE wins in 2/2 seeds" in text
