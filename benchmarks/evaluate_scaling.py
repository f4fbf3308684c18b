"""How the evaluate stage's time and memory grow with the number of test images (1k -> 10k).

    .venv/bin/python -m benchmarks.evaluate_scaling [--sizes 1000 2000 5000 10000]
        [--preset params/mnist.yaml] [--mnist ../shared/datasets/mnist]

Real 28x28 MNIST (the official t10k files, read from disk) with the MNIST preset's evaluate
params. For each size n the test split is n images and the generation metrics compare n samples
per draw with them (evaluate.n_samples: null); the train split, which the real-vs-real floor
draws from, is the whole 10k pool (it overlaps test, which changes the floor's value, not its
cost); val is a fixed 1k. Restoration works on evaluate.n_restore images whatever n is.

Models are freshly initialised from the preset's architectures: the cost is set by the shapes
and the evaluate params, not by trained weights. Each size runs the real stage CLI in its own
process; its peak RSS comes from wait4(). The growth exponent b in time ~ n^b is fitted on the
largest sizes, where the fixed costs (imports, model loading, restoration) weigh least.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.evaluate_budget import evaluate_command, phases, save_fresh_models, store_env

REPO = Path(__file__).resolve().parents[1]


def mnist_pool(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    import tempfile

    from torchvision.datasets.mnist import read_image_file, read_label_file
    from torchvision.datasets.utils import extract_archive

    with tempfile.TemporaryDirectory() as tmp:
        images, labels = (
            extract_archive(str(folder / f"t10k-{kind}-ubyte.gz"), tmp)
            for kind in ("images-idx3", "labels-idx1")
        )
        return read_image_file(images).numpy(), read_label_file(labels).numpy()


def preset_params(preset: Path, workdir: Path, mnist: Path) -> Path:
    """params.yaml with the preset's overrides applied (the way the flow applies them)."""
    from genpipe.config import load_params
    from genpipe.overrides import apply_overrides, read_preset

    path = workdir / "params.yaml"
    shutil.copy(REPO / "params.yaml", path)
    mirror = f"data.download.mirrors=[{mnist.resolve().as_uri()}/]"  # never fetched here
    apply_overrides(path, [*read_preset(preset), mirror])
    load_params(path)
    return path


def build_prepared(
    root: Path, images: np.ndarray, labels: np.ndarray, n_test: int, n_train: int | None = None
) -> None:
    """data/prepared: test = the first n_test of a fixed shuffle, val = the last 1k, train = the
    first n_train (default: all, overlapping test and val)."""
    from genpipe.data.dataset import Split, save_prepared

    order = np.random.default_rng(0).permutation(len(labels))
    parts = {"train": order[:n_train], "val": order[-1000:], "test": order[:n_test]}
    splits = {k: Split(images[i], labels[i]) for k, i in parts.items()}
    meta = {"dataset": "mnist", "classes": [str(i) for i in range(10)]}
    save_prepared(root / "data/prepared", splits, meta)


def run_stage(cmd: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, float, str]:
    """(wall seconds, peak RSS in MB, stderr) of one stage process."""
    with tempfile.TemporaryFile("w+") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        stderr = err.read()
    if proc.returncode != 0:
        sys.exit(f"evaluate failed ({proc.returncode}):\n{stderr[-3000:]}")
    return wall, usage.ru_maxrss / 1024, stderr  # ru_maxrss is in KiB on Linux


def growth_exponent(ns: list[int], values: list[float]) -> float:
    """Least-squares slope of log(value) against log(n)."""
    x, y = np.log(ns), np.log(values)
    return float(np.polyfit(x, y, 1)[0])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 2000, 5000, 10000])
    ap.add_argument("--preset", type=Path, default=REPO / "params/mnist.yaml")
    ap.add_argument("--mnist", type=Path, default=REPO.parent / "shared/datasets/mnist")
    args = ap.parse_args()
    images, labels = mnist_pool(args.mnist)
    if max(args.sizes) > len(labels):
        sys.exit(f"--sizes: at most {len(labels)} test images in {args.mnist}")

    from genpipe.config import load_params

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        params_path = preset_params(args.preset, root, args.mnist)
        params = load_params(params_path)
        save_fresh_models(root / "data/models", params, (1, 28, 28), n_classes=10)
        env = store_env(root)
        e = params.evaluate
        print(
            f"evaluate on MNIST 28x28, {os.cpu_count()} cores, torch threads: default; "
            f"draws {e.draws}, n_restore {e.n_restore}, latent search "
            f"{e.latent_search.steps}x{e.latent_search.restarts}, KID {e.kid_subsets}x"
            f"{e.kid_subset_size}, PRDC k={e.prdc_k}"
        )
        print(
            f"{'n test':>7} {'wall s':>8} {'per 1k':>8} {'peak MB':>8}  phases (the stage's own timers)"
        )
        for n in args.sizes:
            shutil.rmtree(root / "data/prepared", ignore_errors=True)
            build_prepared(root, images, labels, n)
            wall, peak, stderr = run_stage(evaluate_command(params_path), root, env)
            timers = phases(stderr)
            generation = float(re.search(r"generation ([\d.]+)s", timers).group(1))
            rows.append((n, wall, peak, generation))
            print(f"{n:7d} {wall:8.1f} {wall / n * 1000:8.1f} {peak:8.0f}  {timers}")

    ns, walls, peaks, gens = zip(*rows, strict=True)
    if len(rows) >= 2:
        tail = slice(-min(3, len(rows)), None)
        b_total = growth_exponent(list(ns[tail]), list(walls[tail]))
        b_gen = growth_exponent(list(ns[tail]), list(gens[tail]))
        mb_per_k = (peaks[-1] - peaks[0]) / ((ns[-1] - ns[0]) / 1000)
        print(
            f"\n{ns[-1] / ns[0]:g}x the test images: {walls[-1] / walls[0]:.2f}x the time, "
            f"{peaks[-1] / peaks[0]:.2f}x the peak memory (+{mb_per_k:.0f} MB per 1k images)"
        )
        print(
            f"growth over the largest sizes, time ~ n^b: stage b = {b_total:.2f} (fixed costs "
            f"included), generation phase b = {b_gen:.2f} (1 = linear; PRDC's pairwise "
            "distances are the only n^2 term)"
        )


if __name__ == "__main__":
    main()
