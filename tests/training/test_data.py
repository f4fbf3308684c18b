"""Training batches: device-resident and DataLoader paths draw the same reproducible order."""

from __future__ import annotations

import numpy as np
import torch

from genpipe import device
from genpipe.training.data import Batches
from genpipe.training.distributed import Ranks
from tests.params import section

RUNTIME = device.resolve(section("runtime", device="cpu"))


def make(images: np.ndarray, batch: int, seed: int, max_bytes: int = 10**9) -> Batches:
    labels = np.arange(len(images), dtype=np.int64)  # label i marks image i
    order = torch.Generator().manual_seed(seed)
    return Batches(images, labels, batch, RUNTIME, order, max_bytes, 0, True, False, Ranks())


def _images(n: int = 50) -> np.ndarray:
    return np.arange(n * 4, dtype=np.uint8).reshape(n, 1, 2, 2)


def test_each_epoch_is_a_permutation_without_repeats() -> None:
    batches = make(_images(), 16, 0)
    assert batches.on_device is not None and len(batches) == 3  # 50 // 16, last partial dropped
    epoch1 = torch.cat([b.x[:, 0, 0, 0] for b in batches])
    epoch2 = torch.cat([b.x[:, 0, 0, 0] for b in batches])
    assert len(set(epoch1.tolist())) == 48 and not torch.equal(epoch1, epoch2)
    assert float(epoch1.max()) <= 1.0  # scaled to [0, 1]
    for batch in batches:  # labels travel with their images
        assert torch.equal(batch.x[:, 0, 0, 0], (batch.y * 4).float() / 255)


def test_dataloader_path_matches_device_path() -> None:
    resident = make(_images(), 16, 3)
    loader = make(_images(), 16, 3, max_bytes=1)
    assert resident.on_device is not None and loader.on_device is None
    for _ in range(2):
        got = list(loader)
        want = list(resident)
        assert len(got) == len(want) == 3
        for g, w in zip(got, want, strict=True):
            assert torch.equal(g.x, w.x) and torch.equal(g.y, w.y)


def test_batch_larger_than_data_is_clamped() -> None:
    batches = make(_images(10), 64, 0)
    assert [len(b.x) for b in batches] == [10]


def test_keeping_the_last_partial_batch() -> None:
    order = torch.Generator().manual_seed(0)
    labels = np.arange(50, dtype=np.int64)
    batches = Batches(_images(), labels, 16, RUNTIME, order, 10**9, 0, False, False, Ranks())
    sizes = [len(b.y) for b in batches]
    assert sizes == [16, 16, 16, 2] and len(batches) == 4


def test_ranks_take_disjoint_rows_of_every_global_batch() -> None:
    """Two ranks together see exactly the batches one process sees, each row once."""
    labels = np.arange(50, dtype=np.int64)

    def epoch(ranks: Ranks) -> list:
        order = torch.Generator().manual_seed(4)
        b = Batches(_images(), labels, 16, RUNTIME, order, 10**9, 0, False, False, ranks)
        return list(b)

    single = epoch(Ranks())
    parts = [epoch(Ranks(rank, 2, rank)) for rank in range(2)]
    assert len(parts[0]) == len(parts[1]) == len(single) == 4  # 16, 16, 16 and a last 2
    for i, whole in enumerate(single):
        a, b = parts[0][i], parts[1][i]
        assert torch.equal(torch.cat([a.y, b.y]), whole.y)
        assert a.size == b.size == len(whole.y) and a.weight == b.weight == 1.0
    assert len(epoch(Ranks(0, 3, 0))) == 3  # a last batch of 2 has no row for a third rank
    three = epoch(Ranks(0, 3, 0))[0]
    assert len(three.y) == 6 and three.weight == 6 * 3 / 16  # 16 rows: 6, 5, 5
