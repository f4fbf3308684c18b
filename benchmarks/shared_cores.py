"""Three trainings at once, as the flow runs them: each taking every core, against the flow's split.

    .venv/bin/python -m benchmarks.shared_cores [--epochs 1] [--train-images 2000]

The flow starts train_vae, train_gan and train_evaluator together. Left alone, each PyTorch
process starts one OpenMP thread per core, so on 2 cores 6 threads spin-wait on each other. The
flow tells each it shares the cores with two others instead (GENPIPE_CPU_SHARE=3; genpipe sizes
its threads from it, DECISIONS.md "Threads"). This
runs the three stage commands from dvc.yaml at once, on real 28x28 MNIST (read from disk) with the
MNIST preset's models and a short run, both ways, and prints the wall times side by side.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from benchmarks.evaluate_budget import store_env
from benchmarks.evaluate_scaling import REPO, build_prepared, mnist_pool, preset_params

STAGES = ("train_vae", "train_gan", "train_evaluator")


def stage_commands() -> dict[str, list[str]]:
    """The three stages' commands from dvc.yaml, run with this interpreter."""
    dvc = yaml.safe_load((REPO / "dvc.yaml").read_text())
    cmds = {}
    for stage in STAGES:
        argv = shlex.split(dvc["stages"][stage]["cmd"])
        cmds[stage] = [sys.executable if argv[0] == "python" else argv[0], *argv[1:]]
    return cmds


def run_together(
    cmds: dict[str, list[str]], cwd: Path, env: dict[str, str]
) -> tuple[float, dict[str, float]]:
    """Start every command at once; (wall time of all, wall time of each)."""
    start = time.perf_counter()
    procs = {
        s: subprocess.Popen(c, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        for s, c in cmds.items()
    }
    each: dict[str, float] = {}
    while len(each) < len(procs):
        for stage, proc in procs.items():
            if stage not in each and proc.poll() is not None:
                each[stage] = time.perf_counter() - start
                if proc.returncode != 0:
                    sys.exit(f"{stage} failed:\n{proc.stderr.read().decode()[-3000:]}")
        time.sleep(0.05)
    return time.perf_counter() - start, each


def main() -> None:
    from genpipe.overrides import apply_overrides

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--train-images", type=int, default=2000)
    ap.add_argument("--preset", type=Path, default=REPO / "params/mnist.yaml")
    ap.add_argument("--mnist", type=Path, default=REPO.parent / "shared/datasets/mnist")
    args = ap.parse_args()
    cores = len(os.sched_getaffinity(0))
    images, labels = mnist_pool(args.mnist)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        params = preset_params(args.preset, root, args.mnist)
        e = args.epochs
        apply_overrides(
            params,
            [
                *(f"{model}.epochs={e}" for model in ("vae", "gan", "evaluator")),
                "gan.snapshots=1",
                "evaluator.min_test_accuracy=0.0",
            ],
        )
        build_prepared(root, images, labels, n_test=1000, n_train=args.train_images)
        base = {
            k: v
            for k, v in store_env(root).items()
            if k not in ("OMP_NUM_THREADS", "GENPIPE_CPU_SHARE")
        }
        ways = {
            "every process takes every core (PyTorch's default)": base,
            "the flow's split (GENPIPE_CPU_SHARE = 3)": {**base, "GENPIPE_CPU_SHARE": "3"},
        }
        print(
            f"{cores} cores; train_vae + train_gan + train_evaluator at once, {e} epoch(s) of "
            f"{args.train_images} MNIST images, MNIST preset models"
        )
        walls = []
        for label, env in ways.items():
            wall, each = run_together(stage_commands(), root, env)
            walls.append(wall)
            parts = ", ".join(f"{s} {t:.1f} s" for s, t in each.items())
            print(f"  {label}: {wall:.1f} s  ({parts})")
        print(f"the split is {walls[0] / walls[1]:.2f}x faster")


if __name__ == "__main__":
    main()
