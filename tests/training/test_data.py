"""Training batches: device-resident and DataLoader paths draw the same reproducible order."""

from __future__ import annotations

import numpy as np
import torch

from genpipe.config import TrainConfig
from genpipe.training import device
from genpipe.training.data import Batches

RUNTIME = device.resolve(TrainConfig(device="cpu"))


def _images(n: int = 50) -> np.ndarray:
    return np.arange(n * 4, dtype=np.uint8).reshape(n, 1, 2, 2)


def test_each_epoch_is_a_permutation_without_repeats() -> None:
    batches = Batches(_images(), 16, RUNTIME, torch.Generator().manual_seed(0), 10**9)
    assert batches.on_device is not None and len(batches) == 3  # 50 // 16, last partial dropped
    epoch1 = torch.cat([b[:, 0, 0, 0] for b in batches])
    epoch2 = torch.cat([b[:, 0, 0, 0] for b in batches])
    assert len(set(epoch1.tolist())) == 48 and not torch.equal(epoch1, epoch2)
    assert float(epoch1.max()) <= 1.0  # scaled to [0, 1]


def test_dataloader_path_matches_device_path() -> None:
    resident = Batches(_images(), 16, RUNTIME, torch.Generator().manual_seed(3), 10**9)
    loader = Batches(_images(), 16, RUNTIME, torch.Generator().manual_seed(3), 1, num_workers=0)
    assert resident.on_device is not None and loader.on_device is None
    for _ in range(2):
        got = list(loader)
        want = list(resident)
        assert len(got) == len(want) == 3
        assert all(torch.equal(g, w) for g, w in zip(got, want, strict=True))


def test_batch_larger_than_data_is_clamped() -> None:
    batches = Batches(_images(10), 64, RUNTIME, torch.Generator().manual_seed(0), 10**9)
    assert [len(b) for b in batches] == [10]
