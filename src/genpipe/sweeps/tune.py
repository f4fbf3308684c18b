"""Equal-budget tuning (Lucic et al. 2018): what each family's members are, which one is best.

Each family draws the same number of members from its own search space (`tune:` in
params.yaml), every member is scored on the validation split only (score_val@<family>), and the
best member per family goes on to the verdict: retrained for several training seeds and judged
on the test split like any pipeline run.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from typing import Any

from genpipe.config import TuneConfig
from genpipe.registry.decision import FAMILIES, higher_is_better
from genpipe.sweeps.plan import SEED_KEY, expand, sample
from genpipe.sweeps.report import MemberResult, flat

LABEL = {"vae": "VAE", "gan": "GAN"}


def target(family: str) -> str:
    return f"score_val@{family}"


def val_key(family: str, metric: str) -> str:
    return f"val.{family}.{metric}"


def family_members(config: TuneConfig, family: str) -> tuple[int, list[tuple[str, ...]]]:
    """(the size of the family's search space, the `budget` override sets drawn from it)."""
    grid = expand(config.space[family])
    return len(grid), sample(grid, config.budget, config.seed)


def as_spec(sets: Sequence[Sequence[str]]) -> str:
    """Override sets as a sweep spec that expands back to exactly these members."""
    return "; ".join(" ".join(shlex.quote(o) for o in overrides) for overrides in sets)


def ranked(results: Sequence[MemberResult], family: str, metric: str) -> list[MemberResult]:
    """The family's finished members, best val score first (failed ones are left out)."""
    key = val_key(family, metric)
    scored = [r for r in results if r.outcome != "failed" and key in flat(r.metrics)]
    sign = -1.0 if higher_is_better(metric) else 1.0
    return sorted(scored, key=lambda r: sign * float(flat(r.metrics)[key]))


def verdict_spec(best: Mapping[str, MemberResult], seeds: int) -> str:
    """Every family's best overrides together, over train.seed 0..seeds-1."""
    overrides = [o for family in FAMILIES for o in best[family].member.overrides]
    return " ".join([*map(shlex.quote, overrides), f"{SEED_KEY}=range(0,{seeds})"])


def report(
    dataset: str,
    config: TuneConfig,
    sizes: Mapping[str, int],
    results: Mapping[str, Sequence[MemberResult]],
    verdict: str,
) -> str:
    """The budget, the search spaces, every member's val score and the verdict on test."""
    metric = config.metric
    lines = [
        f"Equal-budget tuning on {dataset}: {config.budget} sweep members per family, drawn "
        f"at random (tune.seed {config.seed}) from each family's search space and scored by "
        f"{metric.upper()} on the validation split only; each family's best member is then "
        f"retrained for train.seed 0..{config.seeds - 1} and judged on the test split.",
        "",
        "Search space (params.yaml `tune.space`, DVC's sweep syntax):",
    ]
    for family in FAMILIES:
        space = " ".join(config.space[family])
        lines.append(f"- {LABEL[family]}: `{space}` ({sizes[family]} configurations)")
    for family in FAMILIES:
        members = results[family]
        best = ranked(members, family, metric)
        failed = [r for r in members if r.outcome == "failed"]
        seconds = sum(r.seconds or 0.0 for r in members)
        lines += [
            "",
            f"{LABEL[family]}: {len(members)} members, {len(failed)} failed, {seconds / 60:.0f} "
            "min of member wall time (equal budgets count members, not compute); best first "
            f"(val {metric.upper()}, {'higher' if higher_is_better(metric) else 'lower'} is better):",
            "",
            f"| overrides | val {metric.upper()} | val recognised | seconds | member |",
            "|---|---|---|---|---|",
        ]
        for r in [*best, *failed]:
            values: dict[str, Any] = flat(r.metrics)
            lines.append(
                f"| {' '.join(r.member.overrides)} | {_num(values.get(val_key(family, metric)))} "
                f"| {_num(values.get(val_key(family, 'recognised')))} | {_num(r.seconds, 0)} "
                f"| {r.member.name}{' (failed)' if r.outcome == 'failed' else ''} |"
            )
    lines += ["", verdict]
    return "\n".join(lines)


def _num(value: Any, digits: int = 3) -> str:
    return "—" if value is None else f"{float(value):.{digits}f}"
