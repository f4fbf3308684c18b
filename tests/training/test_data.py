"""Training batches: device-resident and DataLoader paths draw the same reproducible order."""

from __future__ import annotations

import numpy as np
import torch

from genpipe import device
from genpipe.training.data import Batches
from tests.params import section

RUNTIME = device.resolve(section("runtime", device="cpu"))


def make(images: np.ndarray, batch: int, seed: int, max_bytes: int = 10**9) -> Batches:
    labels = np.arange(len(images), dtype=np.int64)  # label i marks image i
    order = torch.Generator().manual_seed(seed)
    return Batches(images, labels, batch, RUNTIME, order, max_bytes, 0, True, False)


def _images(n: int = 50) -> np.ndarray:
    return np.arange(n * 4, dtype=np.uint8).reshape(n, 1, 2, 2)


def test_each_epoch_is_a_permutation_without_repeats() -> None:
    batches = make(_images(), 16, 0)
    assert batches.on_device is not None and len(batches) == 3  # 50 // 16, last partial dropped
    epoch1 = torch.cat([x[:, 0, 0, 0] for x, _ in batches])
    epoch2 = torch.cat([x[:, 0, 0, 0] for x, _ in batches])
    assert len(set(epoch1.tolist())) == 48 and not torch.equal(epoch1, epoch2)
    assert float(epoch1.max()) <= 1.0  # scaled to [0, 1]
    for x, y in batches:  # labels travel with their images
        assert torch.equal(x[:, 0, 0, 0], (y * 4).float() / 255)


def test_dataloader_path_matches_device_path() -> None:
    resident = make(_images(), 16, 3)
    loader = make(_images(), 16, 3, max_bytes=1)
    assert resident.on_device is not None and loader.on_device is None
    for _ in range(2):
        got = list(loader)
        want = list(resident)
        assert len(got) == len(want) == 3
        for (gx, gy), (wx, wy) in zip(got, want, strict=True):
            assert torch.equal(gx, wx) and torch.equal(gy, wy)


def test_batch_larger_than_data_is_clamped() -> None:
    batches = make(_images(10), 64, 0)
    assert [len(x) for x, _ in batches] == [10]


def test_keeping_the_last_partial_batch() -> None:
    order = torch.Generator().manual_seed(0)
    labels = np.arange(50, dtype=np.int64)
    batches = Batches(_images(), labels, 16, RUNTIME, order, 10**9, 0, False, False)
    sizes = [len(y) for _, y in batches]
    assert sizes == [16, 16, 16, 2] and len(batches) == 4
