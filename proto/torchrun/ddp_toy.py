"""Toy DDP on CPU (gloo): each rank trains on its own shard; after N steps the weights must be
identical on every rank, and equal (to float tolerance) to one process trained on the full batch.

Launch: torchrun ... ddp_toy.py --steps 20 --step-sleep 0 --out DIR
"""

import argparse
import datetime
import hashlib
import os
import socket
import time

import torch
import torch.distributed as dist
from torch import nn


def make_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 1))


def shard(rank: int, step: int, per_rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1000 * step + rank)
    x = torch.randn(per_rank, 8, generator=g)
    return x, x.sum(dim=1, keepdim=True).sin()


def digest(model: nn.Module) -> str:
    flat = torch.cat([p.detach().flatten() for p in model.parameters()])
    return hashlib.sha256(flat.numpy().tobytes()).hexdigest()[:16]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--per-rank", type=int, default=16)
    ap.add_argument("--step-sleep", type=float, default=0.0)
    ap.add_argument("--pg-timeout", type=float, default=0, help="seconds; 0 = torch's default")
    args = ap.parse_args()
    t0 = time.monotonic()
    kw = {"timeout": datetime.timedelta(seconds=args.pg_timeout)} if args.pg_timeout else {}
    dist.init_process_group("gloo", **kw)
    rank, world = dist.get_rank(), dist.get_world_size()
    print(
        f"[{socket.gethostname()}] rank {rank}/{world} pid {os.getpid()} "
        f"MASTER_ADDR={os.environ.get('MASTER_ADDR')} MASTER_PORT={os.environ.get('MASTER_PORT')} "
        f"init {time.monotonic() - t0:.2f}s",
        flush=True,
    )
    model = nn.parallel.DistributedDataParallel(make_model())
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for step in range(args.steps):
        x, y = shard(rank, step, args.per_rank)
        opt.zero_grad()
        nn.functional.mse_loss(model(x), y).backward()  # DDP averages gradients over ranks
        opt.step()
        if args.step_sleep:
            print(f"[{socket.gethostname()}] rank {rank} step {step}", flush=True)
            time.sleep(args.step_sleep)
    digests = [None] * world
    dist.all_gather_object(digests, digest(model.module))
    print(
        f"[{socket.gethostname()}] rank {rank} digests {digests} identical={len(set(digests)) == 1}",
        flush=True,
    )
    if rank == 0:
        # One process, full batch (all ranks' shards), same init, same steps.
        ref = make_model()
        ref_opt = torch.optim.SGD(ref.parameters(), lr=0.1)
        for step in range(args.steps):
            parts = [shard(r, step, args.per_rank) for r in range(world)]
            x, y = torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
            ref_opt.zero_grad()
            nn.functional.mse_loss(ref(x), y).backward()
            ref_opt.step()
        diff = max(
            (a - b).abs().max().item()
            for a, b in zip(model.module.parameters(), ref.parameters(), strict=True)
        )
        print(f"rank 0: max |w_ddp - w_single_full_batch| = {diff:.3e}", flush=True)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
