"""Training fixtures: fresh output, work and plots paths per run, one CPU thread."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch

from genpipe.training.run import TrainPaths


@pytest.fixture
def train_paths(tmp_path: Path, digits_prepared: Path) -> Callable[[str], TrainPaths]:
    """Factory: fresh output/work/plots paths under tmp_path, named by `tag`."""

    def make(tag: str) -> TrainPaths:
        root = tmp_path / tag
        return TrainPaths(digits_prepared, root / "model", root / "work", root / "plots.csv")

    return make


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Tiny models: one thread avoids OpenMP spin-waits on a shared, busy CPU."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
