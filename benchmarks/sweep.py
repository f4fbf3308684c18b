"""What a sweep costs beyond its stages: its wall time against the sum of its members' stage
times, and each member's overhead, read from the sweep's MLflow runs.

    .venv/bin/python -m benchmarks.sweep [--name "sweep train.seed=range(0,3)"]

Run it after a sweep (`make sweep ...`) on the store that sweep logged to (the project's, or
MLFLOW_TRACKING_URI). A member's wall time is its `dvc exp run --temp` process (the child run's
`seconds`); its stage time is the sum of its stage runs (those tagged with its run id as their
`genpipe.pipeline_run_id`), each from the stage's own start to its end, so process start-up and
imports count as overhead. The sweep's wall time is its parent run's. Members held by `dvc exp show` already ran nothing and are left out.
"""

from __future__ import annotations

import argparse
import statistics
from typing import Any

from mlflow import MlflowClient

from genpipe import tracking


def _seconds(run) -> float:
    return (run.info.end_time - run.info.start_time) / 1000


def members(client: MlflowClient, experiments: list[str], parent) -> list[dict[str, Any]]:
    """Per member that ran in the sweep `parent`: its run, wall time, stage time and overhead."""
    children = client.search_runs(
        experiments,
        f"tags.`mlflow.parentRunId` = '{parent.info.run_id}' and tags.`genpipe.stage` = 'sweep_member'",
    )
    rows = []
    for child in children:
        if "seconds" not in child.data.metrics:
            continue  # held already: it ran nothing in this sweep
        stages = client.search_runs(
            experiments, f"tags.`genpipe.pipeline_run_id` = '{child.info.run_id}'"
        )
        stage_time = sum(_seconds(s) for s in stages if s.info.end_time)
        wall = child.data.metrics["seconds"]
        rows.append({"member": child.info.run_name, "run_id": child.info.run_id, "wall": wall,
                     "stages": stage_time, "overhead": wall - stage_time, "n": len(stages)})  # fmt: skip
    return sorted(rows, key=lambda r: r["member"])


def summary(parent, rows: list[dict[str, Any]]) -> str:
    """The sweep's wall time against the sum of its members' stage times."""
    sweep_wall = _seconds(parent)
    total = sum(r["stages"] for r in rows)
    return (
        f"sweep wall {sweep_wall:.1f} s; sum of member stage times {total:.1f} s "
        f"(ratio {total / sweep_wall:.2f}: > 1 means members overlapped); "
        f"overhead per member {statistics.fmean(r['overhead'] for r in rows):.1f} s mean, "
        f"{max(r['overhead'] for r in rows):.1f} s max; sweep wall minus the longest member "
        f"{sweep_wall - max(r['wall'] for r in rows):.1f} s"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--name", default=None, help="the sweep's parent run name (default: latest)")
    args = ap.parse_args()
    tracking.configure_mlflow()
    client = MlflowClient()
    experiments = [e.experiment_id for e in client.search_experiments()]
    query = "tags.`genpipe.stage` = 'sweep'"
    if args.name:
        query += f" and attributes.run_name = '{args.name}'"
    parent = client.search_runs(experiments, query, order_by=["attributes.end_time DESC"])[0]
    rows = members(client, experiments, parent)
    print(f"sweep {parent.info.run_name!r}: {len(rows)} members ran")
    print(f"{'member':40s} {'wall s':>8s} {'stages s':>9s} {'overhead s':>11s} stages")
    for r in rows:
        print(
            f"{r['member']:40s} {r['wall']:8.1f} {r['stages']:9.1f} {r['overhead']:11.1f} {r['n']:6d}"
        )
    if rows:
        print(summary(parent, rows))


if __name__ == "__main__":
    main()
