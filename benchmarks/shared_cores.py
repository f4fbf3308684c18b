"""`dvc repro -f -s evaluate` alone and beside two single-thread busy loops, as a ratio.

    .venv/bin/python -m benchmarks.shared_cores [--no-contrast] [-S evaluate.n_restore=32 ...]

Goal: beside the loops, evaluate takes <= 4x its time alone on 2 cores. Four runnable threads
on two cores leave a two-thread stage half the machine, so a fair share costs about 2x; threads
that wait for each other at every operation cost far more.

It runs in a throwaway copy of the project (its own git repo, DVC cache and MLflow store) with
digits prepared and freshly initialised models: evaluate's cost is set by the architectures and
the evaluate params, not by trained weights (benchmarks/evaluate_budget.py). `-s` runs evaluate
alone; `-f` by itself would force every upstream stage too. Two ways, each alone then beside the
loops:
- genpipe's: the stage sizes torch's threads (genpipe.cpu) and OpenMP's idle threads sleep
  (genpipe.stages._cli.passive_wait);
- torch's defaults, for contrast, as before genpipe chose: OMP_NUM_THREADS = every core the
  process may use, and libgomp's default spin before an idle thread sleeps (GOMP_SPINCOUNT=300000,
  what it uses when OMP_WAIT_POLICY is unset). Skip it with --no-contrast: beside the loops it
  takes many minutes.
The machine may be shared: every figure comes with the 1-minute load average before and after.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from benchmarks.evaluate_budget import build_inputs, store_env
from genpipe.overrides import apply_overrides
from tests.conftest import copy_project

BIN = Path(sys.executable).parent
BUSY_LOOP = [sys.executable, "-c", "while True: pass"]


def load() -> str:
    return f"{os.getloadavg()[0]:.1f}"


def evaluate(project: Path, env: dict[str, str]) -> tuple[float, str]:
    """Wall seconds of `dvc repro -f -s evaluate`, and the load average before -> after."""
    before, start = load(), time.perf_counter()
    done = subprocess.run(
        [str(BIN / "dvc"), "repro", "-f", "-s", "evaluate"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
    )
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"dvc repro -f -s evaluate failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
    return seconds, f"load {before} -> {load()}"


@contextlib.contextmanager
def busy_loops(n: int) -> Iterator[None]:
    procs = [subprocess.Popen(BUSY_LOOP) for _ in range(n)]
    try:
        yield
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--no-contrast", action="store_true", help="skip torch's defaults")
    ap.add_argument("-S", "--set", action="append", default=[], help="a params override")
    args = ap.parse_args()
    cores = len(os.sched_getaffinity(0))
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        project = copy_project(root / "project")
        apply_overrides(project / "params.yaml", args.set)
        build_inputs(project, project / "params.yaml")
        env = {
            **store_env(root),
            "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        }
        import mlflow  # the store's schema first: its migrations are not evaluate's cost

        mlflow.MlflowClient(tracking_uri=env["MLFLOW_TRACKING_URI"]).search_experiments()
        user_set = ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT")
        ways = {"genpipe's threads": {k: v for k, v in env.items() if k not in user_set}}
        if not args.no_contrast:
            defaults = {"OMP_NUM_THREADS": str(cores), "GOMP_SPINCOUNT": "300000"}
            ways["torch's defaults"] = {**ways["genpipe's threads"], **defaults}
        sets = f", {' '.join(args.set)}" if args.set else ""
        print(f"`dvc repro -f -s evaluate` on digits{sets}, {cores} cores")
        for label, way in ways.items():
            alone, alone_load = evaluate(project, way)
            print(f"  {label}: alone {alone:.1f} s ({alone_load})", flush=True)
            with busy_loops(2):
                beside, beside_load = evaluate(project, way)
            print(
                f"  {label}: beside two busy loops {beside:.1f} s ({beside_load}): "
                f"{beside / alone:.1f}x its time alone (goal <= 4x)",
                flush=True,
            )


if __name__ == "__main__":
    main()
