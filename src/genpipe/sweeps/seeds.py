"""Is a verdict a property of the families or of one training seed? Pool a sweep over train.seed.

Each member's headline metrics (data/metrics.json: per task, both families' values with their
CIs) give a per-seed verdict as register reads it: the better point estimate wins, and "CIs
clear" when the two CIs do not overlap. Over seeds: wins, mean and sd per family, and each
task's seed spread with the exact `dvc exp run -S ...` that hands it to register's tie rule.
"""

from __future__ import annotations

import math
import re
import shlex
import statistics
from collections.abc import Mapping, Sequence
from typing import Any

from genpipe.registry.decision import FAMILIES, SEED_SPREAD_SDS, cis_overlap, higher_is_better
from genpipe.sweeps.plan import seed_of, without_seed
from genpipe.sweeps.report import MemberResult

TASKS = {"generation": "fd", "restoration": "psnr"}  # what data/metrics.json has CIs for
UNITS = {"generation": "", "restoration": " dB"}
LABEL = {"vae": "VAE", "gan": "GAN"}


def seed_summary(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """One seed's headline metrics -> per task: values with CIs, winner, margin, tie."""
    out: dict[str, Any] = {}
    for task, metric in TASKS.items():
        node = metrics[task][metric]
        values = {
            f: {"value": node[f], "ci": _ci(node.get(f"{f}_ci_low"), node.get(f"{f}_ci_high"))}
            for f in FAMILIES
        }
        vae, gan = values["vae"]["value"], values["gan"]["value"]
        vae_wins = vae >= gan if higher_is_better(metric) else vae <= gan
        out[task] = {
            "metric": metric,
            "values": values,
            "winner": "vae" if vae_wins else "gan",
            "margin": abs(vae - gan),
            "tie": cis_overlap(values["vae"]["ci"], values["gan"]["ci"]),
        }
    out["generation"]["floor"] = metrics["generation"]["fd"]["real"]
    return out


def pooled(seeds: Mapping[int, dict[str, Any]]) -> dict[str, Any]:
    """Wins per family and mean ± sd (over seeds) of each family's value and of the gap."""
    out: dict[str, Any] = {}
    for task in TASKS:
        rows = [s[task] for s in seeds.values()]
        stats = {}
        for f in FAMILIES:
            values = [r["values"][f]["value"] for r in rows]
            stats[f] = {"mean": statistics.fmean(values), "sd": _sd(values)}
        gaps = [r["values"]["gan"]["value"] - r["values"]["vae"]["value"] for r in rows]
        out[task] = {
            "wins": {f: sum(r["winner"] == f for r in rows) for f in FAMILIES},
            "clear_wins": {
                f: sum(r["winner"] == f and not r["tie"] for r in rows) for f in FAMILIES
            },
            "stats": stats,
            "gan_minus_vae": {"mean": statistics.fmean(gaps), "sd": _sd(gaps)},
            "n_seeds": len(rows),
        }
    floors = [s["generation"]["floor"] for s in seeds.values()]
    out["generation"]["floor"] = statistics.fmean(floors)
    return out


def seed_spreads(pool: Mapping[str, Any]) -> dict[str, float | None]:
    """Per task, the one sd register.seed_spread takes: the root mean square of the VAE's and the
    GAN's sd, so sqrt(2) x it is the sd of a VAE-vs-GAN difference of two retrains. None under 2
    seeds: one seed has no spread."""
    out: dict[str, float | None] = {}
    for task in TASKS:
        p = pool[task]
        sds = [p["stats"][f]["sd"] for f in FAMILIES]
        out[task] = math.sqrt(statistics.fmean(sd * sd for sd in sds)) if p["n_seeds"] > 1 else None
    return out


def tie_rule_command(
    dataset: str, pool: Mapping[str, Any], register_metrics: Mapping[str, str]
) -> str:
    """The measured spreads and the exact `dvc exp run -S ...` that hands them to register.

    A task is left out when its spread is not usable: under 2 seeds, zero, or measured on another
    metric than the one register decides the task by (register.<task>_metric)."""
    spreads = seed_spreads(pool)
    lines = [f"Seed spread on {dataset} (sd over training seeds, for register's tie rule):"]
    flags = [
        "register.tie_rule=seed_spread_keeps_champion",
        f"register.seed_spread.dataset={_hydra_string(dataset)}",
    ]
    for task, metric in TASKS.items():
        sd, p = spreads[task], pool[task]
        if sd is None:
            lines.append(f"- {task}: no spread from one seed (run 2 or more); not usable")
            continue
        if sd <= 0:
            lines.append(f"- {task}: sd 0, every seed gave the same {metric}; not usable")
            continue
        fams = ", ".join(f"{LABEL[f]} {p['stats'][f]['sd']:.3g}" for f in FAMILIES)
        measured = f"- {task}: {metric.upper()} sd {_number(sd)} ({fams}; {p['n_seeds']} seeds)"
        if register_metrics[task] != metric:
            lines.append(
                f"{measured}, but register.{task}_metric is {register_metrics[task]}: not usable"
            )
            continue
        lines.append(measured)
        flags.append(f"register.seed_spread.{task}={_number(sd)}")
    if len(flags) == 2:
        lines.append("No spread register can use; its tie rule stays as params.yaml has it.")
        return "\n".join(lines)
    lines += [
        "To have register keep a champion unless the challenger beats it by more than "
        f"{SEED_SPREAD_SDS:g}*sqrt(2) x this sd (-S writes the values into params.yaml; only "
        "decide reruns):",
        "  dvc exp run " + " ".join(f"-S {shlex.quote(flag)}" for flag in flags),
    ]
    return "\n".join(lines)


def markdown(dataset: str, seeds: Mapping[int, dict[str, Any]], pool: Mapping[str, Any]) -> str:
    """The per-seed table, then per task: wins and mean ± sd over seeds."""
    lines = [
        f"Multi-seed verdict on {dataset} ({len(seeds)} training seeds; evaluator, test set and "
        "evaluate protocol fixed).",
        "",
        "| seed | VAE FD | GAN FD | floor | generation winner (margin) | VAE PSNR | GAN PSNR "
        "| restoration winner (margin) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for seed, s in sorted(seeds.items()):
        g, r = s["generation"], s["restoration"]
        lines.append(
            f"| {seed} | {_value(g, 'vae')} | {_value(g, 'gan')} | {g['floor']:.2f} "
            f"| {_win(g, '')} | {r['values']['vae']['value']:.2f} "
            f"| {r['values']['gan']['value']:.2f} | {_win(r, ' dB')} |"
        )
    lines.append("")
    for task, metric in TASKS.items():
        p, unit = pool[task], UNITS[task]
        leader = max(p["wins"], key=p["wins"].__getitem__)
        stats = p["stats"]
        lines.append(
            f"- {task}: {LABEL[leader]} wins in {p['wins'][leader]}/{p['n_seeds']} seeds "
            f"({p['clear_wins'][leader]} with CIs clear of each other); "
            f"{metric.upper()} VAE {stats['vae']['mean']:.2f} ± {stats['vae']['sd']:.2f}{unit}, "
            f"GAN {stats['gan']['mean']:.2f} ± {stats['gan']['sd']:.2f}{unit} (mean ± sd over seeds)"
        )
    floor = pool["generation"]["floor"]
    ratios = ", ".join(
        f"{LABEL[f]} {pool['generation']['stats'][f]['mean'] / floor:.2f}x" for f in FAMILIES
    )
    lines.append(f"- mean test FD against the real-vs-real floor {floor:.2f}: {ratios}")
    return "\n".join(lines)


def _value(task: Mapping[str, Any], family: str) -> str:
    node = task["values"][family]
    ci = node["ci"]
    return f"{node['value']:.2f}" + (f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "")


def _win(task: Mapping[str, Any], unit: str) -> str:
    tie = ", CIs overlap" if task["tie"] else ""
    return f"{LABEL[task['winner']]} ({task['margin']:.2f}{unit}{tie})"


def _ci(low: float | None, high: float | None) -> tuple[float, float] | None:
    return None if low is None or high is None else (low, high)


def _number(value: float) -> str:
    """3 significant digits, written so Hydra's -S grammar reads a float back."""
    return repr(float(f"{value:.3g}"))


def _hydra_string(value: str) -> str:
    """A dataset name as a Hydra string: bare when it cannot read as a number, bool or null."""
    bare = re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.-]*", value)
    if bare and value.lower() not in {"null", "true", "false", "nan", "inf"}:
        return value
    return "'" + value.replace("'", "\\'") + "'"


def _sd(values: list[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else 0.0


def seed_groups(results: Sequence[MemberResult]) -> dict[tuple[str, ...], dict[int, dict]]:
    """Members that differ only by train.seed, pooled: other overrides -> seed -> summary."""
    groups: dict[tuple[str, ...], dict[int, dict]] = {}
    for r in results:
        seed = seed_of(r.member)
        if seed is None or r.outcome == "failed" or "generation" not in r.metrics:
            continue
        groups.setdefault(without_seed(r.member), {})[seed] = seed_summary(r.metrics)
    return groups


def seeds_report(
    dataset: str, results: Sequence[MemberResult], register_metrics: Mapping[str, str]
) -> str:
    """Per group of seeds: the table, the pooled verdict and the spread flags ('' if none)."""
    parts = []
    for others, seeds in seed_groups(results).items():
        pool = pooled(seeds)
        head = f"With {' '.join(others)}:\n" if others else ""
        parts.append(
            head
            + markdown(dataset, seeds, pool)
            + "\n\n"
            + tie_rule_command(dataset, pool, register_metrics)
        )
    return "\n\n".join(parts)
