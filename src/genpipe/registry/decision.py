"""Who wins each task, and whether a challenger may take `champion`: pure functions over numbers.

Nothing here touches MLflow or the disk, so every rule (direction of a metric, the tie rule for
overlapping confidence intervals, the protocol-hash guard) is unit-tested on plain values.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

from genpipe.errors import GenpipeError

Task = Literal["generation", "restoration"]
TASKS: tuple[Task, ...] = ("generation", "restoration")
FAMILIES = ("vae", "gan")
# Metrics where a smaller number is a better model; everything else is "higher is better".
LOWER_IS_BETTER = frozenset({"fd", "kid"})


class ReportError(GenpipeError):
    """The evaluate report lacks a value the decision needs; the message names the key."""


@dataclass(frozen=True)
class Candidate:
    family: str  # vae | gan
    value: float
    ci: tuple[float, float] | None
    method: str | None = None  # restoration: the candidate's best method


@dataclass(frozen=True)
class TaskDecision:
    task: str
    metric: str
    higher_is_better: bool
    winner: Candidate
    runner_up: Candidate
    margin: float  # how much better the winner is, in metric units (>= 0)
    relative_margin: float  # margin / |runner-up value|
    tie: bool  # the two CIs overlap: the point estimate decided
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Promotion:
    promote: bool
    reason: str


def higher_is_better(metric: str) -> bool:
    return metric not in LOWER_IS_BETTER


def _metric(node: Any, key: str) -> tuple[float, tuple[float, float] | None]:
    if not isinstance(node, dict) or "value" not in node:
        raise ReportError(f"report.json: missing {key}.value; rerun the evaluate stage")
    ci = node.get("ci")
    return float(node["value"]), (float(ci[0]), float(ci[1])) if ci else None


def candidates(report: dict, task: Task, metric: str) -> list[Candidate]:
    """The VAE and GAN candidates for `task`, read from the evaluate report."""
    found = []
    for family in FAMILIES:
        if task == "generation":
            key = f"generation.{family}.{metric}"
            value, ci = _metric(report.get("generation", {}).get(family, {}).get(metric), key)
            found.append(Candidate(family, value, ci))
            continue
        node = report.get("restoration", {}).get(family, {})
        method = node.get("best_method")
        if not method:
            raise ReportError(
                f"report.json: missing restoration.{family}.best_method; rerun evaluate"
            )
        key = f"restoration.{family}.methods.{method}.mean.{metric}"
        mean = node.get("methods", {}).get(method, {}).get("mean", {})
        value, ci = _metric(mean.get(metric), key)
        found.append(Candidate(family, value, ci, method))
    return found


def is_better(a: float, b: float, higher: bool) -> bool:
    return a > b if higher else a < b


def cis_overlap(a: tuple[float, float] | None, b: tuple[float, float] | None) -> bool:
    """False when either CI is unknown: then only the point estimates can speak."""
    if a is None or b is None:
        return False
    return a[0] <= b[1] and b[0] <= a[1]


def decide(task: Task, cands: list[Candidate], metric: str) -> TaskDecision:
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
    return TaskDecision(task, metric, higher, winner, runner, margin, relative, tie, reason)


def should_promote(
    challenger: Candidate,
    challenger_protocol: str,
    champion: Candidate | None,
    champion_protocol: str | None,
    higher: bool,
    tie_rule: str,
) -> Promotion:
    """Whether the new version may take `champion` from the current one (None: no champion)."""
    if champion is None:
        return Promotion(True, "no champion existed")
    if champion_protocol != challenger_protocol:
        return Promotion(
            False,
            f"protocol hash differs (champion {champion_protocol}, "
            f"challenger {challenger_protocol}): "
            "the metrics are not comparable, so the champion stays",
        )
    if not is_better(challenger.value, champion.value, higher):
        return Promotion(
            False,
            f"challenger {challenger.value:.4g} does not beat champion {champion.value:.4g}",
        )
    if tie_rule == "overlapping_ci_keeps_champion" and cis_overlap(challenger.ci, champion.ci):
        return Promotion(
            False,
            f"challenger {challenger.value:.4g} is better than champion {champion.value:.4g} but "
            f"the CIs overlap ({_fmt_ci(challenger.ci)} vs {_fmt_ci(champion.ci)}): "
            "the tie keeps the champion",
        )
    return Promotion(True, f"challenger {challenger.value:.4g} beats champion {champion.value:.4g}")


def _fmt_ci(ci: tuple[float, float] | None) -> str:
    return "n/a" if ci is None else f"[{ci[0]:.4g}, {ci[1]:.4g}]"


def markdown(record: dict[str, Any]) -> str:
    """The decision record as a table a reviewer can read in the DVC/MLflow UI."""
    rows = [
        "| task | metric | winner | value (CI) | runner-up | value (CI) | margin | tie "
        "| registry |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for task, d in record["tasks"].items():
        w, r = d["winner"], d["runner_up"]
        reg = d.get("registry", {})
        outcome = (
            f"v{reg['version']} " + ("champion" if reg.get("promoted") else "challenger")
            if reg
            else "-"
        )
        rows.append(
            f"| {task} | {d['metric']} | {_label(w)} | {w['value']:.4g} {_fmt_ci(w['ci'])} | "
            f"{_label(r)} | {r['value']:.4g} {_fmt_ci(r['ci'])} | {d['margin']:.4g} | "
            f"{'yes' if d['tie'] else 'no'} | {outcome} |"
        )
    lines = ["# Register decision", "", *rows, ""]
    for task, d in record["tasks"].items():
        lines.append(f"- **{task}**: {d['reason']}.")
        if d.get("registry"):
            lines.append(f"  Registry: {d['registry']['reason']}.")
    return "\n".join(lines) + "\n"


def _label(c: dict[str, Any]) -> str:
    return f"{c['family']} ({c['method']})" if c.get("method") else c["family"]


def decide_report(report: dict, metrics: dict[str, str]) -> dict[str, TaskDecision]:
    """One decision per task, from the evaluate report and the primary metric of each task."""
    return {
        task: decide(task, candidates(report, task, metrics[task]), metrics[task]) for task in TASKS
    }
