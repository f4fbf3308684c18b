"""Training throughput: images/s, model FLOPs utilisation and speed-up over a naive loop.

For the VAE and the GAN at 8x8 (digits) and 28x28 (MNIST) this measures
  - genpipe's step (training/vae.py, training/gan.py): device-resident data drawn by index,
    channels_last, fused Adam, no per-step host syncs;
  - a naive step on the same architecture and losses: DataLoader over a TensorDataset,
    per-batch .to(device), NCHW, plain (single-tensor) Adam, a .item() per loss per step;
  - MFU: FLOPs of one step (torch.utils.flop_counter) / step time / fp32 matmul peak, the peak
    measured with a large torch.mm right before each row (the machine may be shared).
Timings are the best of several repeats, which filters out interference from other processes.
For 8x8 it also prints a profile of where the time goes (they are overhead-bound).

    python benchmarks/train_throughput.py [--batch 256] [--steps 3] [--repeats 3] [--compile]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path
from tempfile import TemporaryDirectory

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset
from torch.utils.flop_counter import FlopCounterMode

from genpipe.config import GANConfig, TrainConfig, VAEConfig
from genpipe.models.gan import Discriminator, Generator
from genpipe.models.vae import VAE
from genpipe.training import device
from genpipe.training.data import Batches
from genpipe.training.gan import GANTask, d_loss_fn, g_loss_fn
from genpipe.training.vae import VAETask

Step = Callable[[], None]


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


def best_time(step: Step, steps: int, repeats: int) -> float:
    """Best-of-`repeats` seconds per step (after one warm-up step)."""
    step()
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(steps):
            step()
        best = min(best, (time.perf_counter() - t) / steps)
    return best


def count_flops(step: Step) -> int:
    with FlopCounterMode(display=False) as counter:
        step()
    return counter.get_total_flops()


def genpipe_step(model: str, images: torch.Tensor, batch: int, compile_: bool, tmp: Path) -> Step:
    runtime = device.resolve(TrainConfig(device="cpu", compile=compile_))
    shape = tuple(images.shape[1:])
    uint8 = (images * 255).round().to(torch.uint8).numpy()
    data = Batches(uint8, batch, runtime, torch.Generator().manual_seed(0), 10**10)
    if model == "vae":
        task = VAETask(VAEConfig(), shape, runtime, 0, images[:8])
    else:
        task = GANTask(GANConfig(), shape, runtime, 0, 10, tmp)
    it = iter(data)

    def step() -> None:
        nonlocal it
        try:
            x = next(it)
        except StopIteration:
            it = iter(data)
            x = next(it)
        task.train_step(x, 1)

    return step


def naive_step(model: str, images: torch.Tensor, batch: int) -> Step:
    """The seed's style: DataLoader batches, NCHW, default Adam, a host sync per loss."""
    torch.manual_seed(0)
    loader = DataLoader(TensorDataset(images), batch_size=batch, shuffle=True, drop_last=True)
    shape = tuple(images.shape[1:])
    dev = torch.device("cpu")
    if model == "vae":
        vae = VAE(VAEConfig(), shape)
        opt = torch.optim.Adam(vae.parameters(), 2e-3, foreach=False)

        def train(x: torch.Tensor) -> None:
            out = vae(x.to(dev))
            opt.zero_grad()
            out.loss.backward()
            opt.step()
            out.loss.item()

    else:
        cfg = GANConfig()
        g, d = Generator(cfg, shape), Discriminator(cfg, shape)
        opt_g = torch.optim.Adam(g.parameters(), 1e-4, betas=(0.0, 0.9), foreach=False)
        opt_d = torch.optim.Adam(d.parameters(), 4e-4, betas=(0.0, 0.9), foreach=False)

        def train(x: torch.Tensor) -> None:
            x = x.to(dev)
            fake = g(torch.randn(len(x), cfg.latent_dim))
            d_loss = d_loss_fn("hinge", d(x), d(fake.detach()))
            opt_d.zero_grad()
            d_loss.backward()
            opt_d.step()
            g_loss = g_loss_fn("hinge", d(fake))
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


def fake_images(size: int, n: int) -> torch.Tensor:
    """Digit-like random blobs: throughput does not depend on content."""
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
    with TemporaryDirectory() as tmp:
        for size in args.sizes:
            images = fake_images(size, max(4 * args.batch, 1024))
            for model in args.models:
                variants = [("naive", naive_step(model, images, args.batch))]
                variants.append(
                    ("genpipe", genpipe_step(model, images, args.batch, False, Path(tmp)))
                )
                if args.compile:
                    variants.append(
                        ("compiled", genpipe_step(model, images, args.batch, True, Path(tmp)))
                    )
                flops = count_flops(variants[1][1])
                naive_s = None
                for name, step in variants:
                    peak = matmul_peak()
                    sec = best_time(step, args.steps, args.repeats)
                    naive_s = naive_s or sec
                    print(
                        f"{model:5} {size:>3}x{size:<2}{name:>9} {args.batch / sec:9.0f} "
                        f"{sec * 1e3:9.1f} {flops / 1e9:10.2f} {peak / 1e9:9.1f} "
                        f"{flops / sec / peak:6.1%} {naive_s / sec:7.2f}x",
                        flush=True,
                    )
                if size <= 16 and not args.no_profile:
                    profile(variants[1][1], f"genpipe {model} {size}x{size}")


if __name__ == "__main__":
    main()
