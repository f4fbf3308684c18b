"""Batches for the train loop: device-resident tensors when they fit, a DataLoader otherwise.

8x8 digits are tiny and overhead-bound: one float tensor on the device and batches drawn by
index permutation avoid per-batch collation and host-to-device copies entirely. The order is
drawn from an explicit torch.Generator so that resume can restore it exactly. In data-parallel
training every rank draws the same order and takes its own rows of each global batch.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

from genpipe.data.dataset import to_float
from genpipe.device import Runtime
from genpipe.training.distributed import Ranks

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Batch:
    """This rank's rows of one global batch."""

    x: torch.Tensor  # images [b, C, H, W] float in [0, 1]
    y: torch.Tensor  # labels [b]
    size: int  # rows in the global batch
    rows: slice  # this rank's rows of it
    world: int = 1

    @property
    def weight(self) -> float:
        """Loss scale that makes averaged gradients the global batch's mean: 1 unless the ranks
        hold unequal shares (a last partial batch)."""
        return len(self.x) * self.world / self.size


@dataclass
class Batches:
    """An epoch-iterable of `Batch`es on the runtime's device."""

    images: np.ndarray  # uint8 [N, C, H, W]
    labels: np.ndarray  # int64 [N]
    batch_size: int
    runtime: Runtime
    order: torch.Generator  # CPU generator: the data order (part of the resume state)
    max_device_bytes: int
    num_workers: int
    drop_last: bool
    channels_last: bool
    ranks: Ranks

    def __post_init__(self) -> None:
        n = len(self.images)
        if n == 0:
            raise ValueError("no training images")
        self.batch_size = min(self.batch_size, n)
        nbytes = self.images.size * 4  # as float32
        self.on_device: tuple[torch.Tensor, torch.Tensor] | None = None
        if nbytes <= self.max_device_bytes:
            device = self.runtime.device
            x = self._layout(to_float(self.images, device))
            self.on_device = x, torch.from_numpy(self.labels).to(device)
        log.info(
            "training data: %d images, %s (%.1f MB as float32)",
            n,
            "resident on " + self.runtime.name if self.on_device is not None else "DataLoader",
            nbytes / 1e6,
        )

    def __len__(self) -> int:
        n = len(self.images)
        full, rest = divmod(n, self.batch_size)
        # a last partial batch needs a row for every rank
        return full + (0 if self.drop_last or rest < self.ranks.world else 1)

    def _layout(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            return x.contiguous(memory_format=torch.channels_last)
        return x

    def _global_batches(self, perm: torch.Tensor) -> list[torch.Tensor]:
        return [perm[i * self.batch_size : (i + 1) * self.batch_size] for i in range(len(self))]

    def __iter__(self) -> Iterator[Batch]:
        perm = torch.randperm(len(self.images), generator=self.order)  # CPU, reproducible
        world = self.ranks.world
        if self.on_device is not None:
            x, y = self.on_device
            for idx in self._global_batches(perm.to(self.runtime.device)):
                rows = self.ranks.shard(len(idx))
                yield Batch(x[idx[rows]], y[idx[rows]], len(idx), rows, world)
            return
        yield from self._loader(perm)

    def _loader(self, perm: torch.Tensor) -> Iterator[Batch]:
        """Large data: workers decode uint8 batches, pinned memory speeds the copy to the GPU."""
        dataset = TensorDataset(
            torch.from_numpy(np.ascontiguousarray(self.images)), torch.from_numpy(self.labels)
        )
        batches = self._global_batches(perm)
        shards = [self.ranks.shard(len(idx)) for idx in batches]
        loader = DataLoader(
            dataset,
            batch_sampler=[idx[rows].tolist() for idx, rows in zip(batches, shards, strict=True)],
            num_workers=self.num_workers,
            pin_memory=self.runtime.device.type == "cuda",
            persistent_workers=False,
            generator=torch.Generator().manual_seed(0),  # keep the global RNG untouched
        )
        device = self.runtime.device
        for (images, labels), idx, rows in zip(loader, batches, shards, strict=True):
            x = images.to(device, non_blocking=True).float().div_(255.0)
            y = labels.to(device, non_blocking=True)
            yield Batch(self._layout(x), y, len(idx), rows, self.ranks.world)
