"""Batches for the train loop: device-resident tensors when they fit, a DataLoader otherwise.

8x8 digits are tiny and overhead-bound: one float tensor on the device and batches drawn by
index permutation avoid per-batch collation and host-to-device copies entirely. The order is
drawn from an explicit torch.Generator so that resume can restore it exactly.
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

log = logging.getLogger(__name__)


@dataclass
class Batches:
    """An epoch-iterable of (images [B, C, H, W] float in [0, 1], labels [B]) on the device."""

    images: np.ndarray  # uint8 [N, C, H, W]
    labels: np.ndarray  # int64 [N]
    batch_size: int
    runtime: Runtime
    order: torch.Generator  # CPU generator: the data order (part of the resume state)
    max_device_bytes: int
    num_workers: int
    drop_last: bool
    channels_last: bool

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
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def _layout(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            return x.contiguous(memory_format=torch.channels_last)
        return x

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        perm = torch.randperm(len(self.images), generator=self.order)  # CPU, reproducible
        if self.on_device is not None:
            x, y = self.on_device
            perm = perm.to(self.runtime.device)
            for i in range(len(self)):
                idx = perm[i * self.batch_size : (i + 1) * self.batch_size]
                yield x[idx], y[idx]
            return
        yield from self._loader(perm)

    def _loader(self, perm: torch.Tensor) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Large data: workers decode uint8 batches, pinned memory speeds the copy to the GPU."""
        dataset = TensorDataset(
            torch.from_numpy(np.ascontiguousarray(self.images)), torch.from_numpy(self.labels)
        )
        loader = DataLoader(
            dataset,
            batch_size=self.batch_size,
            sampler=perm.tolist(),
            drop_last=self.drop_last,
            num_workers=self.num_workers,
            pin_memory=self.runtime.device.type == "cuda",
            persistent_workers=False,
            generator=torch.Generator().manual_seed(0),  # keep the global RNG untouched
        )
        device = self.runtime.device
        for images, labels in loader:
            x = images.to(device, non_blocking=True).float().div_(255.0)
            yield self._layout(x), labels.to(device, non_blocking=True)
