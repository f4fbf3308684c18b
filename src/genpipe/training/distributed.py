"""Data-parallel training: torchrun launches N processes, each trains on a shard of every batch.

The global batch is `train.batch_size` (or the task's own) whatever the number of processes:
each rank takes its slice of every global batch, computes the loss mean over its slice, and
DistributedDataParallel averages the gradients, so the update is the full batch's. Random
draws that depend on the batch (GAN latents, VAE noise, augmentation) are drawn for the whole
global batch on every rank and sliced, and batch norm averages over the global batch across
ranks: with the same seed, N processes follow the 1-process run up to float summation order.

Rank 0 alone logs, checkpoints and writes outputs; every rank validates the same full split with
the same weights, so stopping rules agree without extra messages.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import logging
import os
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from genpipe.config import DistributedConfig
from genpipe.errors import GenpipeError

log = logging.getLogger(__name__)


class DistributedError(GenpipeError):
    """The processes of one training run disagree, or cannot be set up as configured."""


@dataclass(frozen=True)
class Ranks:
    """Where this process stands in the job (one process: rank 0 of 1)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1

    def barrier(self) -> None:
        if self.active:
            dist.barrier()

    def shard(self, n: int) -> slice:
        """This rank's rows of a global batch of `n` (sizes differ by at most one)."""
        base, extra = divmod(n, self.world)
        start = self.rank * base + min(self.rank, extra)
        return slice(start, start + base + (1 if self.rank < extra else 0))

    def mean(self, values: torch.Tensor) -> torch.Tensor:
        """The average over ranks (every rank gets the same tensor)."""
        if not self.active:
            return values
        reduced = values.clone()
        dist.all_reduce(reduced)
        return reduced / self.world

    def broadcast(self, obj: object) -> object:
        """Rank 0's object on every rank (resume state read from rank 0's disk)."""
        if not self.active:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]


def from_env() -> Ranks:
    """The ranks torchrun put in the environment; one process without it."""
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return Ranks()
    return Ranks(
        int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ["LOCAL_RANK"])
    )


def world_size(config: DistributedConfig) -> int:
    return config.nnodes * config.nproc_per_node


def should_launch(config: DistributedConfig) -> bool:
    """More than one process asked for, and torchrun has not started this one."""
    return world_size(config) > 1 and "LOCAL_RANK" not in os.environ


def torchrun_command(config: DistributedConfig, node_rank: int, argv: Sequence[str]) -> list[str]:
    """torchrun re-running `argv` (a `python -m ...` command line) as every process of a node.

    One machine: standalone rendezvous on a free local port. Several: a static rendezvous at
    `rdzv_endpoint`, where node 0 (the machine running `dvc repro`) holds global rank 0, the one
    that writes the stage's outputs.
    """
    run = [sys.executable, "-m", "torch.distributed.run", "--max-restarts=0"]
    run.append(f"--nproc-per-node={config.nproc_per_node}")
    if config.nnodes == 1:
        run.append("--standalone")
    else:
        if not config.rdzv_endpoint:
            raise DistributedError(
                f"runtime.distributed.nnodes is {config.nnodes} but rdzv_endpoint is empty; set "
                "it to host:port of node 0 (the machine that runs `dvc repro`)"
            )
        host, _, port = config.rdzv_endpoint.rpartition(":")
        run += [
            f"--nnodes={config.nnodes}",
            f"--node-rank={node_rank}",
            f"--master-addr={host}",
            f"--master-port={port}",
        ]
    return [*run, *argv]


def init(device: torch.device, timeout_seconds: float) -> Ranks:
    """Join the process group torchrun prepared: NCCL on CUDA, gloo on CPU."""
    ranks = from_env()
    if not ranks.active:
        return ranks
    if device.type == "cuda":
        torch.cuda.set_device(ranks.local_rank)
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout_seconds))
    log.info("rank %d of %d joined (%s)", ranks.rank, ranks.world, backend)
    return ranks


@contextlib.contextmanager
def process_group(device: torch.device, timeout_seconds: float) -> Iterator[Ranks]:
    ranks = init(device, timeout_seconds)
    try:
        yield ranks
    finally:
        if ranks.active and dist.is_initialized():
            dist.destroy_process_group()


def rank_device(device: torch.device, ranks: Ranks) -> torch.device:
    """One GPU per process on CUDA; the CPU is shared."""
    if device.type == "cuda" and ranks.active:
        return torch.device("cuda", ranks.local_rank)
    return device


def wrap(module: nn.Module, ranks: Ranks) -> nn.Module:
    """DistributedDataParallel around `module` (itself when one process)."""
    if not ranks.active:
        return module
    from torch.nn.parallel import DistributedDataParallel

    ids = [module_device(module).index] if module_device(module).type == "cuda" else None
    return DistributedDataParallel(module, device_ids=ids)


def module_device(module: nn.Module) -> torch.device:
    return next(module.parameters()).device


class _SumOverRanks(torch.autograd.Function):
    """all_reduce(SUM) with its gradient: d(sum over ranks)/d(each rank's input) sums the
    upstream gradients of every rank."""

    @staticmethod
    def forward(ctx: object, x: torch.Tensor) -> torch.Tensor:
        out = x.clone()
        dist.all_reduce(out)
        return out

    @staticmethod
    def backward(ctx: object, grad: torch.Tensor) -> torch.Tensor:
        out = grad.clone()
        dist.all_reduce(out)
        return out


class GlobalBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d over the global batch: statistics all-reduced across ranks, with gradients.

    torch's SyncBatchNorm only runs on accelerators; this one runs on any backend (gloo on CPU
    too). With one process it is exactly BatchNorm2d.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_available() and dist.is_initialized()):
            return super().forward(x)
        if dist.get_world_size() == 1:
            return super().forward(x)
        dims = (0, 2, 3)
        count = torch.tensor([x.shape[0] * x.shape[2] * x.shape[3]], dtype=x.dtype, device=x.device)
        sums = torch.cat([x.sum(dims), x.square().sum(dims), count])  # [2C + 1]
        sums = _SumOverRanks.apply(sums)  # gradients flow back to every rank's inputs
        c = x.shape[1]
        n = sums[-1]
        mean = sums[:c] / n
        var = sums[c : 2 * c] / n - mean.square()  # biased, as batch norm normalises
        with torch.no_grad():
            self.num_batches_tracked.add_(1)
            momentum = self.momentum if self.momentum is not None else 0.0
            unbiased = var * n / (n - 1)
            self.running_mean.lerp_(mean.detach(), momentum)
            self.running_var.lerp_(unbiased.detach(), momentum)
        shape = (1, c, 1, 1)
        y = (x - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        return y * self.weight.view(shape) + self.bias.view(shape)


def global_batch_norm(module: nn.Module) -> nn.Module:
    """Every BatchNorm2d in `module` replaced by GlobalBatchNorm2d, weights and buffers kept."""
    for name, child in module.named_children():
        if type(child) is nn.BatchNorm2d:
            replacement = GlobalBatchNorm2d(
                child.num_features, child.eps, child.momentum, child.affine
            ).to(child.weight.device)
            replacement.load_state_dict(child.state_dict())
            setattr(module, name, replacement)
        else:
            global_batch_norm(child)
    return module


def fingerprint(module: nn.Module) -> str:
    """sha256 of every parameter and buffer: equal on every rank when they are in sync."""
    h = hashlib.sha256()
    for name, tensor in sorted({**module.state_dict()}.items()):
        t = tensor.detach().cpu().contiguous()
        h.update(name.encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def check_in_sync(ranks: Ranks, what: str, module: nn.Module) -> None:
    """Fail loudly if `module` differs across ranks (a DDP bug would otherwise go unseen)."""
    if not ranks.active:
        return
    mine = fingerprint(module)
    every: list[str | None] = [None] * ranks.world
    dist.all_gather_object(every, mine)
    if len(set(every)) != 1:
        raise DistributedError(
            f"{what} differs across ranks ({', '.join(f'rank {i}: {h[:8]}' for i, h in enumerate(every) if h)}); "
            "the processes no longer train one model"
        )
