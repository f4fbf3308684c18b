"""Training throughput: images/s, model FLOPs utilisation and speed-up over a naive loop.

For the VAE and the GAN at 8x8 (digits) and 28x28 (MNIST) this measures
  - genpipe's step (training/tasks/vae.py, training/tasks/gan.py with params.yaml's sections):
    device-resident data drawn by index, channels_last, fused Adam, no per-step host syncs; for
    the GAN, one D pass over real and fake together, and D's weights frozen during the G step
    (no wasted weight gradients); all under training.process.cpu_heap_reuse(), as in training;
  - the same genpipe step without the heap reuse ("no-reuse"), to show what it alone is worth;
  - a naive step on the same architecture and losses: DataLoader over a TensorDataset,
    per-batch .to(device), NCHW, plain (single-tensor) Adam, a .item() per loss per step;
  - MFU: FLOPs of one step (torch.utils.flop_counter) / step time / fp32 matmul peak, the peak
    measured with a large torch.mm right before each model's rows (the machine may be shared).
Timings are the best of several repeats, with the variants taking turns, which filters out
interference from other processes.
For 8x8 it also prints a profile of where the time goes (they are overhead-bound).

    python benchmarks/train_throughput.py [--batch 256] [--steps 3] [--repeats 3] [--compile]
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing as mp
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from tempfile import TemporaryDirectory

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset
from torch.utils.flop_counter import FlopCounterMode

from genpipe import device
from genpipe.config import Params, load_params
from genpipe.data.dataset import PreparedData, Split
from genpipe.models.gan import Discriminator, Generator, discriminator_loss, generator_loss
from genpipe.models.vae import VAE
from genpipe.training.data import Batches
from genpipe.training.process import cpu_heap_reuse
from genpipe.training.task import TaskContext, get_task

Step = Callable[[], None]


@dataclass(frozen=True)
class Spec:
    """One timed variant: naive, genpipe or compiled, with or without the heap reuse."""

    kind: str
    heap_reuse: bool
    model: str
    size: int
    batch: int
    threads: int


def matmul_peak(n: int = 2048, reps: int = 8) -> float:
    """Best-of fp32 FLOP/s of a large square matmul: the attainable peak of this machine."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best


def _worker(conn: Connection, spec: Spec) -> None:
    """One variant in its own process, so that each has its own allocator state: the naive loop
    runs under glibc's defaults, genpipe's under device.cpu_heap_reuse() as in training.
    Protocol: say ready after a warm-up step, then time n steps per request."""
    torch.set_num_threads(spec.threads)
    images = fake_images(spec.size, spec.batch)
    heap = cpu_heap_reuse() if spec.heap_reuse else contextlib.nullcontext()
    with TemporaryDirectory() as tmp, heap:
        if spec.kind == "naive":
            step = naive_step(spec.model, images, spec.batch)
        else:
            step = genpipe_step(spec.model, images, spec.batch, spec.kind == "compiled", Path(tmp))
        step()
        conn.send("ready")
        while (n := conn.recv()) is not None:
            t = time.perf_counter()
            for _ in range(n):
                step()
            conn.send((time.perf_counter() - t) / n)


def best_times(specs: dict[str, Spec], steps: int, repeats: int) -> dict[str, float]:
    """Best-of-`repeats` seconds per step for each variant.

    Each variant lives in its own process; they take turns (round-robin, one at a time), so a
    slow spell on a shared machine hits all of them rather than whichever happened to run then."""
    ctx = mp.get_context("spawn")
    pipes, procs = {}, []
    try:
        for name, spec in specs.items():
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_worker, args=(child, spec), daemon=True)
            proc.start()
            pipes[name] = parent
            procs.append(proc)
            parent.recv()  # started one at a time: warm-ups do not overlap either
        best = dict.fromkeys(specs, float("inf"))
        for _ in range(repeats):
            for name, conn in pipes.items():
                time.sleep(0.2)  # let the last variant's OpenMP threads stop spinning
                conn.send(steps)
                best[name] = min(best[name], conn.recv())
        return best
    finally:
        for conn in pipes.values():
            with contextlib.suppress(OSError):  # a worker that died has closed its end
                conn.send(None)
        for proc in procs:
            proc.join(timeout=30)
            if proc.is_alive():
                proc.kill()


def count_flops(step: Step) -> int:
    with FlopCounterMode(display=False) as counter:
        step()
    return counter.get_total_flops()


def shipped_params() -> Params:
    return load_params(Path(__file__).resolve().parents[1] / "params.yaml")


def genpipe_step(model: str, images: torch.Tensor, batch: int, compile_: bool, tmp: Path) -> Step:
    params = shipped_params()
    runtime = device.resolve(
        params.runtime.model_copy(update={"device": "cpu", "compile": compile_})
    )
    uint8 = (images * 255).round().to(torch.uint8).numpy()
    split = Split(uint8, torch.zeros(len(uint8), dtype=torch.long).numpy())
    data = PreparedData(
        split, split, split, {"dataset": "bench", "classes": ["0"], "data_hash": "-"}
    )
    task = get_task(model).build(params, data, TaskContext(runtime, tmp))
    batches = Batches(
        uint8, split.labels, batch, runtime, task.data_order, 10**10, 0, True, task.channels_last
    )
    it = iter(batches)

    def step() -> None:
        nonlocal it
        try:
            x, y = next(it)
        except StopIteration:
            it = iter(batches)
            x, y = next(it)
        task.train_step(x, y, 1)

    return step


def naive_step(model: str, images: torch.Tensor, batch: int) -> Step:
    """The seed's style: DataLoader batches, NCHW, default Adam, a host sync per loss."""
    torch.manual_seed(0)
    loader = DataLoader(TensorDataset(images), batch_size=batch, shuffle=True, drop_last=True)
    shape = tuple(images.shape[1:])
    dev = torch.device("cpu")
    params = shipped_params()
    if model == "vae":
        vae_cfg = params.vae
        vae = VAE(vae_cfg, shape)
        opt = torch.optim.Adam(vae.parameters(), vae_cfg.lr, foreach=False)

        def train(x: torch.Tensor) -> None:
            out = vae(x.to(dev))
            opt.zero_grad()
            out.loss.backward()
            opt.step()
            out.loss.item()

    else:
        cfg = params.gan
        g, d = Generator(cfg, shape), Discriminator(cfg, shape)
        opt_g = torch.optim.Adam(g.parameters(), cfg.lr.generator, cfg.betas, foreach=False)
        opt_d = torch.optim.Adam(d.parameters(), cfg.lr.discriminator, cfg.betas, foreach=False)

        def train(x: torch.Tensor) -> None:
            x = x.to(dev)
            fake = g(torch.randn(len(x), cfg.latent_dim))
            d_loss = discriminator_loss(cfg.loss, d(x), d(fake.detach())).loss
            opt_d.zero_grad()
            d_loss.backward()
            opt_d.step()
            g_loss = generator_loss(cfg.loss, d(fake)).loss
            opt_g.zero_grad()
            g_loss.backward()
            opt_g.step()
            d_loss.item(), g_loss.item()

    it = iter(loader)

    def step() -> None:
        nonlocal it
        try:
            (x,) = next(it)
        except StopIteration:
            it = iter(loader)
            (x,) = next(it)
        train(x)

    return step


def profile(step: Step, label: str, rows: int = 12) -> None:
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    step()
    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(5):
            step()
    print(f"\nprofile: {label} (5 steps, self CPU time)")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows))


def fake_images(size: int, batch: int) -> torch.Tensor:
    """Digit-like random blobs, enough for several batches: throughput does not depend on content."""
    n = max(4 * batch, 1024)
    g = torch.Generator().manual_seed(0)
    return F.avg_pool2d(torch.rand(n, 1, size + 2, size + 2, generator=g), 3, 1).clamp(0, 1)


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--sizes", type=int, nargs="+", default=[8, 28])
    p.add_argument("--models", nargs="+", default=["vae", "gan"])
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--compile", action="store_true", help="also time torch.compile'd models")
    p.add_argument("--no-profile", action="store_true")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, batch {args.batch}")
    header = (
        f"{'model':5} {'size':>5} {'variant':9} {'img/s':>9} {'ms/step':>9} "
        f"{'GFLOP/step':>10} {'peak GF/s':>9} {'MFU':>6} {'vs naive':>8}"
    )
    print(header)
    print("-" * len(header))
    for size in args.sizes:
        for model in args.models:
            specs = {
                "naive": Spec("naive", False, model, size, args.batch, args.threads),
                "genpipe": Spec("genpipe", True, model, size, args.batch, args.threads),
                # the same step under glibc's default heap: what the heap reuse alone is worth
                "no-reuse": Spec("genpipe", False, model, size, args.batch, args.threads),
            }
            if args.compile:
                specs["compiled"] = Spec("compiled", True, model, size, args.batch, args.threads)
            images = fake_images(size, args.batch)
            with TemporaryDirectory() as tmp:  # FLOPs do not depend on the allocator
                flops = count_flops(genpipe_step(model, images, args.batch, False, Path(tmp)))
            peak = matmul_peak()
            times = best_times(specs, args.steps, args.repeats)
            for name, sec in times.items():
                print(
                    f"{model:5} {size:>3}x{size:<2}{name:>9} {args.batch / sec:9.0f} "
                    f"{sec * 1e3:9.1f} {flops / 1e9:10.2f} {peak / 1e9:9.1f} "
                    f"{flops / sec / peak:6.1%} {times['naive'] / sec:7.2f}x",
                    flush=True,
                )
            if size <= 16 and not args.no_profile:
                with TemporaryDirectory() as tmp, cpu_heap_reuse():
                    genpipe = genpipe_step(model, images, args.batch, False, Path(tmp))
                    profile(genpipe, f"genpipe {model} {size}x{size}")


if __name__ == "__main__":
    main()
