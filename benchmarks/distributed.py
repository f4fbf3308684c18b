"""Data-parallel training throughput on this machine's CPU: 1 process against 2 (torchrun, gloo).

For the VAE and the GAN at 28x28 (params.yaml's models, a global batch of --batch images) it
prints images/s for
  - 1 process, 1 thread;   - 1 process, all cores;   - 2 processes, one core each (DDP),
the scaling efficiency of 2 processes against the 1-process runs, and the communication share of
a DDP step: 1 - (step time with the gradient all-reduce skipped, DDP's no_sync) / (step time).
Each configuration runs in its own torchrun job, one after the other; steps are timed after a
warm-up and the best of --repeats timings is kept (the machine may be shared).

    python -m benchmarks.distributed [--batch 256] [--steps 5] [--repeats 3] [--size 28]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def worker(task_name: str, size: int, batch: int, steps: int, repeats: int, out: Path) -> None:
    """One rank: time `steps` global batches with and without gradient sync."""
    import numpy as np
    import torch

    from genpipe import device
    from genpipe.config import load_params
    from genpipe.data.dataset import PreparedData, Split
    from genpipe.training import distributed
    from genpipe.training.data import Batches
    from genpipe.training.task import TaskContext, get_task

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    params = load_params(REPO / "params.yaml")
    runtime = device.resolve(params.runtime.model_copy(update={"device": "cpu"}))
    g = torch.Generator().manual_seed(0)
    images = (torch.rand(4 * batch, 1, size, size, generator=g) * 255).to(torch.uint8).numpy()
    split = Split(images, np.zeros(len(images), dtype=np.int64))
    meta = {"dataset": "bench", "classes": ["0"], "data_hash": "-"}
    data = PreparedData(split, split, split, meta)
    with (
        tempfile.TemporaryDirectory() as tmp,
        distributed.process_group(runtime.device, 600) as ranks,
    ):
        task = get_task(task_name).build(params, data, TaskContext(runtime, Path(tmp), ranks))
        task.batch_size = batch
        batches = Batches(
            images, split.labels, batch, runtime, task.data_order, 10**10, 0, True,
            task.channels_last, ranks,
        )  # fmt: skip
        wrapped = [m for m in vars(task).values() if hasattr(m, "no_sync")]

        def timed(sync: bool) -> float:
            best = float("inf")
            for _ in range(repeats):
                it = iter(batches)
                ranks.barrier()
                start = time.perf_counter()
                with contextlib.ExitStack() as stack:
                    if not sync:
                        for module in wrapped:
                            stack.enter_context(module.no_sync())
                    for _ in range(steps):
                        try:
                            b = next(it)
                        except StopIteration:
                            it = iter(batches)
                            b = next(it)
                        task.train_step(b, 1)
                ranks.barrier()
                best = min(best, (time.perf_counter() - start) / steps)
            return best

        timed(True)  # warm-up
        with_sync = timed(True)
        without = timed(False) if wrapped else with_sync
        if ranks.is_main:
            out.write_text(json.dumps({"step": with_sync, "no_sync": without}))


def run(task: str, processes: int, threads: int, args: argparse.Namespace) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        module = ["-m", "benchmarks.distributed", "--worker", task, "--out", str(out)]
        module += ["--batch", str(args.batch), "--steps", str(args.steps)]
        module += ["--repeats", str(args.repeats), "--size", str(args.size)]
        launch = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
        launch += [f"--nproc-per-node={processes}", "--max-restarts=0"]
        env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
        done = subprocess.run([*launch, *module], cwd=REPO, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            sys.exit(f"{task} x{processes} failed:\n{done.stderr[-3000:]}")
        return json.loads(out.read_text())


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--size", type=int, default=28)
    p.add_argument("--models", nargs="+", default=["vae", "gan"])
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    p.add_argument("--out", type=Path, default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        worker(args.worker, args.size, args.batch, args.steps, args.repeats, args.out)
        return
    cores = len(os.sched_getaffinity(0))
    print(
        f"{cores} cores, global batch {args.batch}, {args.size}x{args.size}, load {os.getloadavg()[0]:.1f}"
    )
    header = f"{'model':5} {'run':22} {'img/s':>8} {'ms/step':>8} {'vs 1x1':>7} {'comm':>6}"
    print(header)
    print("-" * len(header))
    for model in args.models:
        rows = {
            "1 process x 1 thread": run(model, 1, 1, args),
            f"1 process x {cores} threads": run(model, 1, cores, args),
            "2 processes x 1 thread": run(model, 2, 1, args),
        }
        base = rows["1 process x 1 thread"]["step"]
        for name, r in rows.items():
            comm = 1 - r["no_sync"] / r["step"] if name.startswith("2") else 0.0
            print(
                f"{model:5} {name:22} {args.batch / r['step']:8.0f} {r['step'] * 1e3:8.1f} "
                f"{base / r['step']:6.2f}x {comm:6.1%}"
            )
        two = rows["2 processes x 1 thread"]["step"]
        print(
            f"{model:5} scaling efficiency of 2 processes: {base / two / 2:.0%} of ideal against "
            f"1x1, {rows[f'1 process x {cores} threads']['step'] / two:.2f}x the all-cores process"
        )


if __name__ == "__main__":
    main()
