"""The decision rules, on plain numbers: direction, margins, ties, and who holds `champion`."""

from __future__ import annotations

from pathlib import Path

import pytest

from genpipe.evaluation.schema import Incumbent, Report
from genpipe.registry.decision import (
    candidate_id,
    candidates,
    cis_overlap,
    decide,
    decision_record,
    headline_metrics,
    markdown,
    serving_settings,
    should_promote,
    tie_rule_for,
)
from genpipe.registry.schema import Candidate
from tests.params import section
from tests.registry.conftest import incumbents, make_report, metric

CONFIG = section("register")


def cand(family: str, value: float, ci: tuple[float, float] | None, method: str | None = None):
    return Candidate(family=family, value=value, ci=ci, method=method)


def report_for(models: dict[str, Path], **kwargs: object) -> Report:
    return make_report(
        models, fd={"vae": 12.0, "gan": 7.5}, psnr={"vae": 20.0, "gan": 18.0}, **kwargs
    )  # type: ignore[arg-type]


def decided(report: Report, config=CONFIG, rolled_back=None, **champions: Incumbent | None):
    """decision_record with these champions scored beside the report."""
    return decision_record(report, incumbents(report, rolled_back, **champions), config)


def test_generation_lower_fd_wins_with_margin_and_runner_up(tiny_models) -> None:
    d = decide("generation", candidates(report_for(tiny_models), "generation", "fd"), "fd")
    assert (d.winner.family, d.runner_up.family) == ("gan", "vae")
    assert d.margin == pytest.approx(4.5)
    assert d.relative_margin == pytest.approx(4.5 / 12.0)
    assert not d.tie
    assert "lower is better" in d.reason


def test_restoration_uses_each_family_best_method_and_higher_psnr_wins(tiny_models) -> None:
    report = make_report(tiny_models, fd={"vae": 1.0, "gan": 2.0}, psnr={"vae": 21.0, "gan": 23.0})
    d = decide("restoration", candidates(report, "restoration", "psnr"), "psnr")
    assert (d.winner.family, d.winner.method, d.winner.value) == ("gan", "gan_latent_search", 23.0)
    assert d.runner_up.method == "vae_amortised"
    assert d.margin == pytest.approx(2.0)


def test_overlapping_cis_are_flagged_as_a_tie_decided_by_the_point_estimate() -> None:
    a, b = cand("vae", 10.0, (9.0, 11.0)), cand("gan", 10.5, (9.5, 11.5))
    d = decide("generation", [a, b], "fd")
    assert d.winner.family == "vae" and d.tie
    assert "statistical tie" in d.reason


def test_cis_overlap_edges() -> None:
    assert cis_overlap((0, 1), (1, 2))
    assert not cis_overlap((0, 1), (1.01, 2))
    assert not cis_overlap(None, (0, 1))


CHAMP = cand("vae", 20.0, (19.5, 20.5))


@pytest.mark.parametrize(
    ("challenger", "rule", "promote", "why"),
    [
        (cand("gan", 22.0, (21.5, 22.5)), "overlapping_ci_keeps_champion", True, "beats"),
        (cand("gan", 19.0, (18.5, 19.5)), "overlapping_ci_keeps_champion", False, "not beat"),
        (cand("gan", 20.0, (19.5, 20.5)), "point_estimate", False, "does not beat"),
        (cand("gan", 20.3, (19.8, 20.8)), "overlapping_ci_keeps_champion", False, "overlap"),
        (cand("gan", 20.3, (19.8, 20.8)), "point_estimate", True, "beats"),
    ],
)
def test_should_promote(challenger: Candidate, rule: str, promote: bool, why: str) -> None:
    verdict = should_promote(challenger, CHAMP, higher=True, tie_rule=rule)
    assert verdict.promote is promote
    assert why in verdict.reason


def test_lower_is_better_direction() -> None:
    fd_champ = cand("vae", 10.0, None)
    assert should_promote(cand("gan", 9.0, None), fd_champ, False, "point_estimate").promote
    assert not should_promote(cand("gan", 11.0, None), fd_champ, False, "point_estimate").promote


# A CI-clear gain of 1.0 dB: the CI rule promotes it; a seed sd of 0.5 (bar 2*sqrt(2)*0.5 = 1.41)
# keeps the champion, a seed sd of 0.3 (bar 0.85) does not.
CLEAR_GAIN = cand("gan", 21.0, (20.9, 21.1))
CHAMP_NARROW = cand("vae", 20.0, (19.9, 20.1))


def test_the_seed_spread_rule_keeps_a_clear_gain_within_the_spread() -> None:
    assert should_promote(CLEAR_GAIN, CHAMP_NARROW, True, "overlapping_ci_keeps_champion").promote
    kept = should_promote(CLEAR_GAIN, CHAMP_NARROW, True, "seed_spread_keeps_champion", 0.5)
    assert not kept.promote
    assert "within the seed spread" in kept.reason and "= 1.414" in kept.reason


def test_the_seed_spread_rule_promotes_a_gain_beyond_the_spread() -> None:
    won = should_promote(CLEAR_GAIN, CHAMP_NARROW, True, "seed_spread_keeps_champion", 0.3)
    assert won.promote and "by 1, more than 2*sqrt(2) x seed sd 0.3 = 0.8485" in won.reason


def test_the_seed_spread_rule_keeps_what_the_ci_rule_keeps_and_reads_the_direction() -> None:
    overlap = cand("gan", 20.3, (19.8, 20.8))
    assert not should_promote(overlap, CHAMP, True, "seed_spread_keeps_champion", 0.01).promote
    fd_champ = cand("vae", 10.0, (9.9, 10.1))
    lower = cand("gan", 9.0, (8.9, 9.1))  # FD: lower is better, gain 1.0
    assert should_promote(lower, fd_champ, False, "seed_spread_keeps_champion", 0.3).promote
    assert not should_promote(lower, fd_champ, False, "seed_spread_keeps_champion", 0.5).promote
    worse = cand("gan", 11.0, (10.9, 11.1))
    assert not should_promote(worse, fd_champ, False, "seed_spread_keeps_champion", 0.01).promote


SEED_RULE = section(
    "register",
    tie_rule="seed_spread_keeps_champion",
    seed_spread={"dataset": "digits", "generation": 0.6, "restoration": None},
)


def test_tie_rule_for_falls_back_to_the_ci_rule_where_no_spread_was_measured() -> None:
    assert tie_rule_for(SEED_RULE, "generation", "digits").seed_spread == 0.6
    empty = tie_rule_for(SEED_RULE, "restoration", "digits")
    assert (empty.name, empty.seed_spread) == ("overlapping_ci_keeps_champion", None)
    assert "register.seed_spread.restoration is empty" in (empty.note or "")
    other = tie_rule_for(SEED_RULE, "generation", "mnist")
    assert other.name == "overlapping_ci_keeps_champion"
    assert "measured on digits, not on mnist" in (other.note or "")
    assert tie_rule_for(CONFIG, "generation", "digits").note is None  # the default: no fallback


def test_the_record_says_which_rule_kept_the_champion(tiny_models) -> None:
    report = report_for(tiny_models)  # GAN FD 7.5 [7.4, 7.6], VAE PSNR 20.0 [19.9, 20.1]
    # generation: 1.5 better with clear CIs, but within 2*sqrt(2)*0.6 = 1.70 of the champion
    # restoration: no spread measured, so the CI rule: 0.5 dB better with clear CIs takes it
    champions = {
        "generation": incumbent("generation", "vae", 9.0),
        "restoration": incumbent("restoration", "gan", 19.5),
    }
    record = decided(report, SEED_RULE, **champions)
    assert record.tie_rule == "seed_spread_keeps_champion"
    assert record.seed_spread == {"dataset": "digits", "generation": 0.6, "restoration": None}
    gen, rest = record.tasks["generation"], record.tasks["restoration"]
    assert gen.champion == "incumbent" and "within the seed spread" in gen.reason
    assert (gen.tie_rule, gen.seed_spread) == ("seed_spread_keeps_champion", 0.6)
    assert rest.champion == "challenger" and rest.tie_rule == "overlapping_ci_keeps_champion"
    assert "register.seed_spread.restoration is empty" in rest.reason
    # the same numbers under the default rule: the generation challenger takes the title
    assert decided(report, **champions).tasks["generation"].champion == "challenger"
    text = markdown(record)
    assert "Champion (seed_spread_keeps_champion, seed sd 0.6): challenger 7.5" in text
    assert "Champion (overlapping_ci_keeps_champion): challenger 20" in text


def incumbent(task: str, family: str, value: float | None, **extra: object) -> Incumbent:
    """A task's champion (v3, other weights) as score_champions scored it."""
    scored = value is not None
    key = "fd" if task == "generation" else "psnr"
    fields = {
        "version": "3",
        "candidate_id": "old-candidate",
        "family": family,
        "method": None if task == "generation" else "vae_latent_search",
        "weights_hash": "old-weights",
        "registered_by": "someone@somewhere:/checkout",
        "scored": scored,
        "reason": None if scored else "it expects images (1, 28, 28), the data has (1, 8, 8)",
        "same_as": None,
        "scores": {key: metric(value)} if scored else {},
    }
    return Incumbent.model_validate(fields | extra)


def test_no_champion_yet_the_challenger_takes_it(tiny_models) -> None:
    record = decided(report_for(tiny_models))
    gen = record.tasks["generation"]
    assert gen.model_name == "genpipe-digits-generation"
    assert gen.champion == "challenger" and gen.reason == "no champion existed"
    assert gen.challenger.family == "gan"
    assert gen.challenger.checkpoint.endswith("epoch_0002.pt")
    rest = record.tasks["restoration"].challenger
    assert rest.settings == {
        "method": "vae_amortised",
        "seed": 0,
        "latent_search": {"steps": 5, "restarts": 2, "lr": 0.1, "prior_weight": 0.01},
    }


def test_a_better_scored_champion_keeps_the_title_and_a_worse_one_loses_it(tiny_models) -> None:
    report = report_for(tiny_models)
    kept = decided(report, generation=incumbent("generation", "vae", 5.0)).tasks["generation"]
    assert kept.champion == "incumbent"
    assert "does not beat champion 5" in kept.reason and "same protocol" in kept.reason

    lost = decided(report, generation=incumbent("generation", "vae", 9.0)).tasks["generation"]
    assert lost.champion == "challenger" and "beats champion 9" in lost.reason

    # within the CIs: the default tie rule keeps the champion
    tie = decided(report, generation=incumbent("generation", "vae", 7.55)).tasks["generation"]
    assert tie.champion == "incumbent" and "the tie keeps the champion" in tie.reason


def test_a_rolled_back_challenger_is_not_promoted_again(tiny_models) -> None:
    report = report_for(tiny_models)
    better = decided(report, generation=incumbent("generation", "vae", 9.0))
    challenger = better.tasks["generation"].challenger.candidate_id
    assert better.tasks["generation"].champion == "challenger"
    again = decided(
        report,
        rolled_back={"generation": [challenger]},
        generation=incumbent("generation", "vae", 9.0),
    ).tasks["generation"]
    assert again.champion == "incumbent"
    assert "rolled back" in again.reason and "v3 stays" in again.reason


def test_a_champion_that_cannot_be_scored_gives_way_and_says_how_to_go_back(tiny_models) -> None:
    report = report_for(tiny_models)
    rest = decided(report, restoration=incumbent("restoration", "vae", None)).tasks["restoration"]
    assert rest.champion == "challenger"
    assert "could not be scored" in rest.reason and "(1, 28, 28)" in rest.reason
    assert "`genpipe registry rollback restoration` returns to v3" in rest.reason


def test_the_champion_being_the_best_new_candidate_is_kept_as_is(tiny_models) -> None:
    report = report_for(tiny_models)
    settings = serving_settings(report, "generation", None)
    same = candidate_id("generation", report.models["gan"].weights_hash, settings)
    champion = incumbent("generation", "gan", 7.5, candidate_id=same)
    gen = decided(report, generation=champion).tasks["generation"]
    assert gen.champion == "incumbent" and gen.challenger.candidate_id == same


def test_decision_id_names_what_the_registry_must_hold(tiny_models) -> None:
    report = report_for(tiny_models)
    first = decided(report)
    assert decided(report).decision_id == first.decision_id
    # other numbers, same candidates and holders: the registry needs no change
    other = make_report(tiny_models, fd={"vae": 13.0, "gan": 7.0}, psnr={"vae": 21.0, "gan": 18.0})
    assert decided(other).decision_id == first.decision_id
    # the champion changes hands: another decision
    kept = decided(report, generation=incumbent("generation", "vae", 5.0))
    assert kept.decision_id != first.decision_id


def test_headline_metrics_are_few_and_flat_enough_for_exp_show(tiny_models) -> None:
    report = report_for(tiny_models)
    headline = headline_metrics(report, decided(report))

    def leaves(node: object) -> int:
        return sum(leaves(v) for v in node.values()) if isinstance(node, dict) else 1

    assert 10 <= leaves(headline) <= 20
    assert headline["generation"]["winner"] == "gan"
    assert headline["generation"]["fd"]["gan_ci_low"] == pytest.approx(7.4)
    assert headline["restoration"]["psnr"]["vae"] == 20.0
    assert headline["evaluator_accuracy"] == 0.99


def test_markdown_table_names_winner_runner_up_and_champion(tiny_models) -> None:
    report = report_for(tiny_models)
    text = markdown(decided(report, restoration=incumbent("restoration", "vae", 25.0)))
    assert "| generation | fd | gan | 7.5" in text
    assert "| restoration | psnr | vae (vae_amortised) | 20" in text
    assert "gan (new)" in text and "v3 (kept)" in text and "no champion existed" in text
