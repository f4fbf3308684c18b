"""Who wins each task, and who should hold `champion`: pure functions over the evaluate report.

Two questions per task, both answered from numbers measured under one protocol on the same data:
- the verdict: VAE or GAN (the family comparison genpipe exists to settle);
- the promotion: the better of them (the challenger) against the current champion, which the
  evaluate stage scored under the same protocol (the incumbent). A champion that could not be
  scored (another image shape, missing artifacts) cannot defend its title.

A challenger that `genpipe registry rollback` moved away from is never promoted again: the
rollback is a person's judgement that the numbers did not capture.

Nothing here touches MLflow or the disk: every rule is unit-tested on plain values. The record
this module builds (data/register/decision.json) is what the register stage applies to the
registry, compare-and-set against the champion it names.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from typing import Any

from genpipe.config import RegisterConfig
from genpipe.errors import GenpipeError
from genpipe.evaluation.schema import Incumbent, Incumbents, Report, Task, TaskIncumbent
from genpipe.registry.schema import Candidate, Challenger, Decision, TaskDecision, Verdict

TASKS: tuple[Task, ...] = ("generation", "restoration")
FAMILIES = ("vae", "gan")
# Metrics where a smaller number is a better model; everything else is "higher is better".
LOWER_IS_BETTER = frozenset({"fd", "kid"})

CI_RULE = "overlapping_ci_keeps_champion"
SEED_SPREAD_RULE = "seed_spread_keeps_champion"
# seed_spread_keeps_champion: a challenger must beat the champion by more than SEED_SPREAD_SDS
# standard deviations of the difference between two retrains, i.e. by more than
# 2 * sqrt(2) * seed_spread. sqrt(2): champion and challenger are each one training run, so their
# difference carries the retrain noise of both (sd sqrt(2) * s when each has sd s). 2 and not 1:
# at 1 sd a retrain of the very same config would take the title about one time in six (normal
# tail); docs/results.md ("Multi-seed verdict") shows how same-config seeds and the VAE-GAN gap
# compare with both bars. Not 1.96 or a t quantile: three seeds pin s down only to within a factor of ~2.
SEED_SPREAD_SDS = 2.0


@dataclass(frozen=True)
class Promotion:
    promote: bool
    reason: str


@dataclass(frozen=True)
class TieRule:
    """The tie rule one task is decided by: the seed-spread rule falls back to the CI rule
    where no spread was measured for this task and data, and `note` says so."""

    name: str
    seed_spread: float | None = None
    note: str | None = None


def higher_is_better(metric: str) -> bool:
    return metric not in LOWER_IS_BETTER


def model_name(prefix: str, dataset: str, task: str) -> str:
    """The registered model of one task on one dataset, e.g. genpipe-digits-generation."""
    return f"{prefix}-{dataset}-{task}"


def serving_settings(report: Report, task: str, method: str | None) -> dict[str, Any]:
    """What a served model needs besides its weights: restoration restores as evaluate did."""
    if task != "restoration":
        return {}
    protocol = report.protocol.evaluate
    return {
        "method": method,
        "seed": protocol.seed,
        "latent_search": protocol.latent_search.model_dump(),
    }


def candidate_id(task: str, weights_hash: str, settings: dict[str, Any]) -> str:
    """The identity of a servable model: task, weights and serving settings (not a version)."""
    payload = {"task": task, "weights": weights_hash, "settings": settings}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def candidates(report: Report, task: Task, metric: str) -> list[Candidate]:
    """The VAE and GAN candidates for `task`, read from the evaluate report."""
    found = []
    for family in FAMILIES:
        if task == "generation":
            stat, method = report.generation[family][metric], None
        else:
            node = report.restoration.family(family)
            stat, method = node.best.mean[metric], node.best_method
        found.append(Candidate(family=family, value=stat.value, ci=stat.ci, method=method))
    return found


def is_better(a: float, b: float, higher: bool) -> bool:
    return a > b if higher else a < b


def cis_overlap(a: tuple[float, float] | None, b: tuple[float, float] | None) -> bool:
    """False when either CI is unknown: then only the point estimates can speak."""
    if a is None or b is None:
        return False
    return a[0] <= b[1] and b[0] <= a[1]


def decide(task: Task, cands: list[Candidate], metric: str) -> Verdict:
    """The better family by the point estimate; overlapping CIs are flagged as a tie."""
    higher = higher_is_better(metric)
    a, b = cands
    winner, runner = (a, b) if is_better(a.value, b.value, higher) or a.value == b.value else (b, a)
    margin = abs(winner.value - runner.value)
    relative = margin / abs(runner.value) if runner.value else float("inf") if margin else 0.0
    tie = cis_overlap(winner.ci, runner.ci) or margin == 0
    direction = "higher" if higher else "lower"
    reason = (
        f"{winner.family} {metric}={winner.value:.4g} vs {runner.family} {runner.value:.4g} "
        f"({direction} is better; margin {margin:.4g})"
    )
    if tie:
        reason += "; the CIs overlap, so this is a statistical tie decided by the point estimate"
    return Verdict(
        task=task,
        metric=metric,
        higher_is_better=higher,
        winner=winner,
        runner_up=runner,
        margin=margin,
        relative_margin=relative,
        tie=tie,
        reason=reason,
    )


def tie_rule_for(config: RegisterConfig, task: Task, dataset: str) -> TieRule:
    """The rule that decides `task` on `dataset`: register.tie_rule, unless it is the seed-spread
    rule and register.seed_spread has no spread for this task measured on this data."""
    if config.tie_rule != SEED_SPREAD_RULE:
        return TieRule(config.tie_rule)
    spread = config.seed_spread
    sd = getattr(spread, task)
    if sd is None:
        note = f"register.seed_spread.{task} is empty (not measured), so the CI rule applied"
        return TieRule(CI_RULE, None, note)
    if spread.dataset != dataset:
        note = (
            f"register.seed_spread was measured on {spread.dataset}, not on {dataset}, so the CI "
            f"rule applied (`make verdict-seeds` measures it on {dataset})"
        )
        return TieRule(CI_RULE, None, note)
    return TieRule(SEED_SPREAD_RULE, sd)


def should_promote(
    challenger: Candidate,
    champion: Candidate,
    higher: bool,
    tie_rule: str,
    seed_spread: float | None = None,
) -> Promotion:
    """Whether the challenger may take `champion` from a champion scored on the same protocol.

    The seed-spread rule keeps everything the CI rule keeps, and also a challenger whose gain is
    within what retraining alone moves the metric by: switching to it never promotes more.
    """
    c, k = challenger.value, champion.value
    if not is_better(c, k, higher):
        return Promotion(False, f"challenger {c:.4g} does not beat champion {k:.4g}")
    if tie_rule in (CI_RULE, SEED_SPREAD_RULE) and cis_overlap(challenger.ci, champion.ci):
        return Promotion(
            False,
            f"challenger {c:.4g} is better than champion {k:.4g} but the CIs overlap "
            f"({_fmt_ci(challenger.ci)} vs {_fmt_ci(champion.ci)}): the tie keeps the champion",
        )
    if tie_rule == SEED_SPREAD_RULE:
        if seed_spread is None:
            raise ValueError(f"tie rule {SEED_SPREAD_RULE} needs a seed spread")
        gain, needed = abs(c - k), SEED_SPREAD_SDS * math.sqrt(2) * seed_spread
        bar = f"{SEED_SPREAD_SDS:g}*sqrt(2) x seed sd {seed_spread:.4g} = {needed:.4g}"
        if gain <= needed:
            return Promotion(
                False,
                f"challenger {c:.4g} is better than champion {k:.4g} by {gain:.4g}, within the "
                f"seed spread (a challenger must gain more than {bar}): the champion stays",
            )
        return Promotion(
            True, f"challenger {c:.4g} beats champion {k:.4g} by {gain:.4g}, more than {bar}"
        )
    return Promotion(True, f"challenger {c:.4g} beats champion {k:.4g}")


def _fmt_ci(ci: tuple[float, float] | None) -> str:
    return "n/a" if ci is None else f"[{ci[0]:.4g}, {ci[1]:.4g}]"


def _challenger(report: Report, task: Task, winner: Candidate) -> Challenger:
    entry = report.models[winner.family]  # type: ignore[index]
    settings = serving_settings(report, task, winner.method)
    return Challenger(
        **winner.model_dump(),
        candidate_id=candidate_id(task, entry.weights_hash, settings),
        weights_hash=entry.weights_hash,
        checkpoint=entry.checkpoint,
        settings=settings,
        train_run_id=entry.run_id,
    )


def _as_candidate(entry: Incumbent, metric: str) -> Candidate | None:
    """The champion as a Candidate, when it was scored here."""
    if not entry.scored:
        return None
    stat = entry.scores[metric]
    return Candidate(family=entry.family, value=stat.value, ci=stat.ci, method=entry.method)


def decide_task(
    report: Report, held: TaskIncumbent, task: Task, config: RegisterConfig
) -> TaskDecision:
    """The verdict and the champion for one task, as the decision record stores them."""
    metric = config.generation_metric if task == "generation" else config.restoration_metric
    verdict = decide(task, candidates(report, task, metric), metric)
    rule = tie_rule_for(config, task, report.dataset)
    challenger = _challenger(report, task, verdict.winner)
    entry = held.champion
    incumbent = None if entry is None else _as_candidate(entry, metric)
    if entry is None:
        holder, reason = "challenger", "no champion existed"
    elif entry.candidate_id == challenger.candidate_id:
        holder, reason = "incumbent", "the champion is the best new candidate itself"
    elif challenger.candidate_id in held.rolled_back:
        holder = "incumbent"
        reason = (
            f"the best new candidate was rolled back from champion before "
            f"(`genpipe registry rollback {task}`), so it is not promoted again; champion "
            f"v{entry.version} stays"
        )
    elif incumbent is None:
        holder = "challenger"
        reason = (
            f"champion v{entry.version} could not be scored under this protocol "
            f"({entry.reason}); the best new candidate takes champion, and "
            f"`genpipe registry rollback {task}` returns to v{entry.version}"
        )
    else:
        promotion = should_promote(
            verdict.winner, incumbent, higher_is_better(metric), rule.name, rule.seed_spread
        )
        holder = "challenger" if promotion.promote else "incumbent"
        reason = f"{promotion.reason} (champion v{entry.version}, same protocol)"
        if rule.note:
            reason += f"; {rule.note}"
    return TaskDecision(
        model_name=model_name(config.model_name_prefix, report.dataset, task),
        metric=metric,
        verdict=verdict,
        challenger=challenger,
        incumbent=entry,
        champion=holder,
        reason=reason,
        tie_rule=rule.name,  # the rule that applied (register.tie_rule may have fallen back)
        seed_spread=rule.seed_spread,
    )


def decision_record(report: Report, incumbents: Incumbents, config: RegisterConfig) -> Decision:
    """data/register/decision.json: per task the verdict and who holds `champion`."""
    if incumbents.protocol_hash != report.protocol_hash:
        raise GenpipeError(
            f"incumbents were scored under protocol {incumbents.protocol_hash[:12]}, the report "
            f"under {report.protocol_hash[:12]}; rerun `dvc repro`"
        )
    tasks = {task: decide_task(report, incumbents.tasks[task], task, config) for task in TASKS}
    return Decision(
        decision_id=decision_id(tasks),
        dataset=report.dataset,
        protocol_hash=report.protocol_hash,
        data_hash=report.data_hash,
        tie_rule=config.tie_rule,  # as configured; each task says which rule applied
        seed_spread=config.seed_spread.model_dump(),
        tasks=tasks,
    )


def headline_metrics(report: Report, record: Decision) -> dict[str, Any]:
    """The few numbers worth a column in `dvc exp show`: winners, FD/KID/PSNR per family with
    CI bounds, the real floor and the evaluator's accuracy (report.json keeps everything)."""

    def stat(node: Any, family: str) -> dict[str, float | None]:
        lo, hi = node.ci or (None, None)
        return {family: node.value, f"{family}_ci_low": lo, f"{family}_ci_high": hi}

    gen = report.generation
    fd: dict[str, Any] = {"real": gen["real"]["fd"].value}
    psnr: dict[str, Any] = {}
    for family in FAMILIES:
        fd |= stat(gen[family]["fd"], family)
        psnr |= stat(report.restoration.family(family).best.mean["psnr"], family)
    return _rounded(
        {
            "generation": {
                "winner": record.tasks["generation"].verdict.winner.family,
                "fd": fd,
                "kid": {family: gen[family]["kid"].value for family in FAMILIES},
            },
            "restoration": {
                "winner": record.tasks["restoration"].verdict.winner.family,
                "psnr": psnr,
            },
            "evaluator_accuracy": report.evaluator_accuracy,
        }
    )


def _rounded(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _rounded(v) for k, v in node.items()}
    return round(node, 4) if isinstance(node, float) else node


def decision_id(tasks: dict[Task, TaskDecision]) -> str:
    """What the registry must hold: per model, the challenger and the champion's identity."""
    target = {
        t: {
            "model": d.model_name,
            "challenger": d.challenger.candidate_id,
            "champion": d.champion_candidate,
        }
        for t, d in tasks.items()
    }
    return hashlib.sha256(json.dumps(target, sort_keys=True).encode()).hexdigest()


def markdown(record: Decision) -> str:
    """The decision record as tables a reviewer can read in the DVC/MLflow UI."""
    rows = [
        "| task | metric | VAE vs GAN winner | value (CI) | runner-up | value (CI) | margin | tie "
        "| champion |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for task, d in record.tasks.items():
        v = d.verdict
        w, r = v.winner, v.runner_up
        holder = (
            f"{_label(d.challenger)} (new)"
            if d.champion == "challenger"
            else f"v{d.incumbent.version} (kept)"  # type: ignore[union-attr]
        )
        rows.append(
            f"| {task} | {v.metric} | {_label(w)} | {w.value:.4g} {_fmt_ci(w.ci)} | "
            f"{_label(r)} | {r.value:.4g} {_fmt_ci(r.ci)} | {v.margin:.4g} | "
            f"{'yes' if v.tie else 'no'} | {holder} |"
        )
    lines = ["# Register decision", "", *rows, ""]
    for task, d in record.tasks.items():
        lines.append(f"- **{task}**: {d.verdict.reason}.")
        spread = "" if d.seed_spread is None else f", seed sd {d.seed_spread:.4g}"
        lines.append(f"  Champion ({d.tie_rule}{spread}): {d.reason}.")
    return "\n".join(lines) + "\n"


def _label(c: Candidate) -> str:
    return f"{c.family} ({c.method})" if c.method else c.family
