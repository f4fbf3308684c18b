"""The decision rules, on plain numbers: direction, margins, ties, the champion guard."""

from __future__ import annotations

from pathlib import Path

import pytest

from genpipe.registry.decision import (
    Candidate,
    ReportError,
    candidates,
    cis_overlap,
    decide,
    decide_report,
    markdown,
    should_promote,
)
from tests.registry.conftest import make_report

MODELS = {"vae": Path("vae"), "gan": Path("gan")}


def test_generation_lower_fd_wins_with_margin_and_runner_up() -> None:
    report = make_report(MODELS, fd={"vae": 12.0, "gan": 7.5}, psnr={"vae": 20.0, "gan": 18.0})
    d = decide_report(report, {"generation": "fd", "restoration": "psnr"})
    assert d["generation"].winner.family == "gan"
    assert d["generation"].runner_up.family == "vae"
    assert d["generation"].margin == pytest.approx(4.5)
    assert d["generation"].relative_margin == pytest.approx(4.5 / 12.0)
    assert not d["generation"].tie
    assert "lower is better" in d["generation"].reason


def test_restoration_uses_each_family_best_method_and_higher_psnr_wins() -> None:
    report = make_report(MODELS, fd={"vae": 1.0, "gan": 2.0}, psnr={"vae": 21.0, "gan": 23.0})
    d = decide_report(report, {"generation": "fd", "restoration": "psnr"})["restoration"]
    assert (d.winner.family, d.winner.method, d.winner.value) == ("gan", "gan_latent_search", 23.0)
    assert d.runner_up.method == "vae_amortised"
    assert d.margin == pytest.approx(2.0)


def test_overlapping_cis_are_flagged_as_a_tie_decided_by_the_point_estimate() -> None:
    a, b = Candidate("vae", 10.0, (9.0, 11.0)), Candidate("gan", 10.5, (9.5, 11.5))
    d = decide("generation", [a, b], "fd")
    assert d.winner.family == "vae" and d.tie
    assert "statistical tie" in d.reason


def test_cis_overlap_edges() -> None:
    assert cis_overlap((0, 1), (1, 2))
    assert not cis_overlap((0, 1), (1.01, 2))
    assert not cis_overlap(None, (0, 1))


def test_missing_metric_names_the_key() -> None:
    report = make_report(MODELS, fd={"vae": 1.0, "gan": 2.0}, psnr={"vae": 1.0, "gan": 2.0})
    del report["restoration"]["gan"]["methods"]["gan_latent_search"]["mean"]["psnr"]
    with pytest.raises(
        ReportError, match=r"restoration\.gan\.methods\.gan_latent_search\.mean\.psnr"
    ):
        candidates(report, "restoration", "psnr")


CHAMP = Candidate("vae", 20.0, (19.5, 20.5))


@pytest.mark.parametrize(
    ("challenger", "protocol", "rule", "promote", "why"),
    [
        (Candidate("gan", 22.0, (21.5, 22.5)), "p", "overlapping_ci_keeps_champion", True, "beats"),
        (
            Candidate("gan", 19.0, (18.5, 19.5)),
            "p",
            "overlapping_ci_keeps_champion",
            False,
            "does not beat",
        ),
        (Candidate("gan", 20.0, (19.5, 20.5)), "p", "point_estimate", False, "does not beat"),
        (
            Candidate("gan", 20.3, (19.8, 20.8)),
            "p",
            "overlapping_ci_keeps_champion",
            False,
            "overlap",
        ),
        (Candidate("gan", 20.3, (19.8, 20.8)), "p", "point_estimate", True, "beats"),
        (
            Candidate("gan", 30.0, (29.0, 31.0)),
            "other",
            "overlapping_ci_keeps_champion",
            False,
            "protocol hash",
        ),
    ],
)
def test_should_promote(
    challenger: Candidate, protocol: str, rule: str, promote: bool, why: str
) -> None:
    verdict = should_promote(challenger, protocol, CHAMP, "p", higher=True, tie_rule=rule)
    assert verdict.promote is promote
    assert why in verdict.reason


def test_no_champion_always_promotes_and_lower_is_better_direction() -> None:
    assert should_promote(CHAMP, "p", None, None, True, "point_estimate").promote
    fd_champ = Candidate("vae", 10.0, None)
    assert should_promote(
        Candidate("gan", 9.0, None), "p", fd_champ, "p", False, "overlapping_ci_keeps_champion"
    ).promote
    assert not should_promote(
        Candidate("gan", 11.0, None), "p", fd_champ, "p", False, "point_estimate"
    ).promote


def test_markdown_table_names_winner_runner_up_and_registry_outcome() -> None:
    report = make_report(MODELS, fd={"vae": 12.0, "gan": 7.5}, psnr={"vae": 20.0, "gan": 18.0})
    decisions = decide_report(report, {"generation": "fd", "restoration": "psnr"})
    record = {"tasks": {t: d.to_dict() for t, d in decisions.items()}}
    record["tasks"]["generation"]["registry"] = {
        "version": "3",
        "promoted": True,
        "reason": "no champion existed",
    }
    text = markdown(record)
    assert "| generation | fd | gan | 7.5" in text
    assert "| restoration | psnr | vae (vae_amortised) | 20" in text
    assert "v3 champion" in text and "no champion existed" in text
