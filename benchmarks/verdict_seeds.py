"""Is the verdict a property of the families or of one training seed? Retrain both for several seeds.

    .venv/bin/python -m benchmarks.verdict_seeds [--seeds 0 1 2] [--out data/seeds]

(`make verdict-seeds`.) Run it after `make pipeline` (digits) or `make pipeline-mnist`: it reads
params.yaml as the workspace has it (the MNIST preset stays there after pipeline-mnist), the
pipeline's prepared data and its evaluator, so every seed is scored in one feature space against
one test set. Only `train.seed` changes: it sets both models' initial weights, data order and
noise. The evaluate protocol (draws, latents, restoration images) stays fixed.

A seed whose models the pipeline already trained (same vae/gan config, same data hash) reuses
data/models; the others train into <out>/seed-<n>/ with MLflow runs in <out>/mlflow.db, so the
project's store and registry are left alone. Per seed it decides each task as register does
(the point estimate wins; a tie when the CIs overlap), then pools: mean ± sd over seeds.
Writes <out>/seeds.json and <out>/seeds.md, and prints the table, then each task's seed spread
and the `dvc exp run -S ...` that lets register's tie rule use it (it never edits params.yaml).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import re
import shlex
import statistics
import time
from pathlib import Path
from typing import Any

from benchmarks.own_store import use_own_store
from genpipe.config import Params, load_params

TASKS = {"generation": "fd", "restoration": "psnr"}
LABEL = {"vae": "VAE", "gan": "GAN"}


def with_seed(params: Params, seed: int) -> Params:
    return dataclasses.replace(params, train=params.train.model_copy(update={"seed": seed}))


def pipeline_models_fit(params: Params, models: Path, data_hash: str, lock: Path) -> bool:
    """The pipeline's model files were trained with exactly these vae/gan/train settings."""
    from genpipe.models.checkpoint import CheckpointError, read_record

    try:
        vae = read_record(models / "vae" / "model.pt")
        gan = read_record(models / "gan" / "model.pt")
        runs = [json.loads((models / f / "run.json").read_text()) for f in ("vae", "gan")]
    except (CheckpointError, OSError, json.JSONDecodeError):
        return False
    return (
        all("run_id" in run for run in runs)
        and vae["config"] == params.vae.model_dump(mode="json")
        and gan["config"] == params.gan.model_dump(mode="json")
        and vae["meta"].get("data_hash") == data_hash == gan["meta"].get("data_hash")
        and _train_seed_of(lock) == params.train.seed
    )


def _train_seed_of(lock: Path) -> int | None:
    """train.seed of the pipeline's last run, from dvc.lock's params of train_vae."""
    import yaml

    if not lock.exists():
        return None
    stage = yaml.safe_load(lock.read_text())["stages"].get("train_vae", {})
    return stage.get("params", {}).get("params.yaml", {}).get("train.seed")


def train_seed(params: Params, prepared: Path, out: Path) -> dict[str, float]:
    """Train VAE then GAN for params.train.seed into out/{vae,gan}; wall seconds per family."""
    from genpipe.training.run import TrainPaths, train

    seconds = {}
    for family in ("vae", "gan"):
        start = time.perf_counter()
        paths = TrainPaths(prepared, out / family, out / "work" / family, out / f"{family}.csv")
        result = train(family, params, paths)
        if not result.finished:
            raise RuntimeError(f"seed {params.train.seed}: {family} training did not finish")
        seconds[family] = time.perf_counter() - start
    return seconds


def score(params: Params, prepared: Path, models: Path, evaluator: Path) -> dict[str, Any]:
    """The evaluate stage's computation (no champion scored beside): the report dict."""
    import torch

    from genpipe.evaluation.evaluate import evaluate
    from genpipe.evaluation.inputs import load_inputs

    cpu = torch.device("cpu")
    inputs = load_inputs(prepared, models / "vae", models / "gan", evaluator, cpu)
    return evaluate(inputs, params.evaluate, cpu).report


def seed_summary(report: dict[str, Any]) -> dict[str, Any]:
    """Per task: each family's value and CI, the winner, the margin, whether the CIs overlap."""
    from genpipe.registry.decision import candidates, decide, higher_is_better

    out: dict[str, Any] = {}
    for task, metric in TASKS.items():
        verdict = decide(task, candidates(report, task, metric), metric)
        fams = {c.family: c for c in (verdict.winner, verdict.runner_up)}
        out[task] = {
            "metric": metric,
            "higher_is_better": higher_is_better(metric),
            "values": {
                f: {"value": c.value, "ci": c.ci, "method": c.method} for f, c in fams.items()
            },
            "winner": verdict.winner.family,
            "margin": verdict.margin,
            "tie": verdict.tie,
        }
    gen = report["generation"]
    out["generation"]["floor"] = gen["real"]["fd"]["value"]
    out["generation"]["recognised"] = {f: gen[f]["recognised"]["value"] for f in ("vae", "gan")}
    return out


def pooled(seeds: dict[int, dict[str, Any]]) -> dict[str, Any]:
    """Wins per family and mean ± sd (over seeds) of each family's value and of the margin."""
    out: dict[str, Any] = {}
    for task in TASKS:
        rows = [s[task] for s in seeds.values()]
        wins = {f: sum(r["winner"] == f for r in rows) for f in ("vae", "gan")}
        stats = {}
        for f in ("vae", "gan"):
            values = [r["values"][f]["value"] for r in rows]
            stats[f] = {"mean": statistics.fmean(values), "sd": _sd(values)}
        margins = [
            (r["values"]["gan"]["value"] - r["values"]["vae"]["value"]) for r in rows
        ]  # signed, GAN minus VAE
        out[task] = {
            "wins": wins,
            "clear_wins": {f: sum(r["winner"] == f and not r["tie"] for r in rows) for f in wins},
            "stats": stats,
            "gan_minus_vae": {"mean": statistics.fmean(margins), "sd": _sd(margins)},
            "n_seeds": len(rows),
        }
    return out


def seed_spreads(pool: dict[str, Any]) -> dict[str, float | None]:
    """Per task, the one seed sd register.seed_spread takes: the root mean square of the VAE's and
    the GAN's sd, so that sqrt(2) x it is exactly the sd of a VAE-vs-GAN difference of two
    retrains (a same-family difference lies between). None under 2 seeds: one has no spread."""
    out: dict[str, float | None] = {}
    for task in TASKS:
        p = pool[task]
        sds = [p["stats"][f]["sd"] for f in ("vae", "gan")]
        out[task] = math.sqrt(statistics.fmean(sd * sd for sd in sds)) if p["n_seeds"] > 1 else None
    return out


def tie_rule_command(dataset: str, pool: dict[str, Any], register_metrics: dict[str, str]) -> str:
    """The measured spreads and the exact `dvc exp run -S ...` that hands them to register.

    A task is left out when its spread is not usable: under 2 seeds, zero, or measured on another
    metric than the one register decides the task by (register.<task>_metric)."""
    spreads = seed_spreads(pool)
    lines = [f"Seed spread on {dataset} (sd over training seeds, for register's tie rule):"]
    flags = ["register.tie_rule=seed_spread_keeps_champion"]
    flags.append(f"register.seed_spread.dataset={_hydra_string(dataset)}")
    for task, metric in TASKS.items():
        sd, p = spreads[task], pool[task]
        if sd is None:
            lines.append(f"- {task}: no spread from one seed (run 2 or more); not usable")
            continue
        if sd <= 0:
            lines.append(f"- {task}: sd 0, every seed gave the same {metric}; not usable")
            continue
        fams = ", ".join(f"{LABEL[f]} {p['stats'][f]['sd']:.3g}" for f in ("vae", "gan"))
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
    from genpipe.registry.decision import SEED_SPREAD_SDS

    lines += [
        "To have register keep a champion unless the challenger beats it by more than "
        f"{SEED_SPREAD_SDS:g}*sqrt(2) x this sd (-S writes the values into params.yaml; only "
        "decide reruns):",
        "  dvc exp run " + " ".join(f"-S {shlex.quote(flag)}" for flag in flags),
    ]
    return "\n".join(lines)


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


def _ci(ci: Any) -> str:
    return f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else ""


def markdown(dataset: str, seeds: dict[int, dict[str, Any]], pool: dict[str, Any]) -> str:
    lines = [
        f"Multi-seed verdict on {dataset} ({len(seeds)} training seeds; evaluator, test set and "
        "evaluate protocol fixed).",
        "",
        "| seed | VAE FD | GAN FD | floor | generation winner (margin) | VAE PSNR | GAN PSNR "
        "| restoration winner (margin) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for seed, s in seeds.items():
        g, r = s["generation"], s["restoration"]

        def win(t: dict[str, Any], unit: str) -> str:
            tie = ", CIs overlap" if t["tie"] else ""
            return f"{LABEL[t['winner']]} ({t['margin']:.2f}{unit}{tie})"

        lines.append(
            f"| {seed} | {g['values']['vae']['value']:.2f}{_ci(g['values']['vae']['ci'])} "
            f"| {g['values']['gan']['value']:.2f}{_ci(g['values']['gan']['ci'])} "
            f"| {g['floor']:.2f} | {win(g, '')} "
            f"| {r['values']['vae']['value']:.2f} | {r['values']['gan']['value']:.2f} "
            f"| {win(r, ' dB')} |"
        )
    lines.append("")
    for task, unit in (("generation", ""), ("restoration", " dB")):
        p = pool[task]
        leader = max(p["wins"], key=p["wins"].__getitem__)
        stats = p["stats"]
        lines.append(
            f"- {task}: {LABEL[leader]} wins in {p['wins'][leader]}/{p['n_seeds']} seeds "
            f"({p['clear_wins'][leader]} with CIs clear of each other); "
            f"{TASKS[task].upper()} VAE {stats['vae']['mean']:.2f} ± {stats['vae']['sd']:.2f}{unit}, "
            f"GAN {stats['gan']['mean']:.2f} ± {stats['gan']['sd']:.2f}{unit} (mean ± sd over seeds)"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    ap.add_argument("--prepared", type=Path, default=Path("data/prepared"))
    ap.add_argument("--models", type=Path, default=Path("data/models"))
    ap.add_argument("--lock", type=Path, default=Path("dvc.lock"), help="the pipeline's lock")
    ap.add_argument("--out", type=Path, default=Path("data/seeds"))
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    use_own_store(args.out)
    from genpipe.data.dataset import load_prepared

    base = load_params(args.params)
    data_hash = load_prepared(args.prepared).data_hash
    evaluator = args.models / "evaluator"
    results: dict[int, dict[str, Any]] = {}
    timings: dict[int, dict[str, float]] = {}
    for seed in args.seeds:
        params = with_seed(base, seed)
        if pipeline_models_fit(params, args.models, data_hash, args.lock):
            models, timings[seed] = args.models, {}
            logging.info("seed %d: the pipeline's models (data/models) were trained with it", seed)
        else:
            models = args.out / f"seed-{seed}"
            timings[seed] = train_seed(params, args.prepared, models)
        start = time.perf_counter()
        report = score(params, args.prepared, models, evaluator)
        timings[seed]["evaluate"] = time.perf_counter() - start
        results[seed] = seed_summary(report)
        (args.out / f"seed-{seed}.report.json").write_text(json.dumps(report, indent=1))
    pool = pooled(results)
    dataset = report["dataset"]
    doc = {
        "dataset": dataset,
        "seeds": results,
        "pooled": pool,
        "seed_spread": seed_spreads(pool),
        "seconds": timings,
    }
    (args.out / "seeds.json").write_text(json.dumps(doc, indent=1))
    metrics = {"generation": base.register.generation_metric}
    metrics["restoration"] = base.register.restoration_metric
    text = markdown(dataset, results, pool) + "\n\n" + tie_rule_command(dataset, pool, metrics)
    (args.out / "seeds.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
