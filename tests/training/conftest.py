"""Tiny training configs: real models and loops, shrunk to run in seconds on a busy CPU."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from genpipe.config import Params
from genpipe.training.run import TrainPaths


def tiny_params(**sections: dict[str, Any]) -> Params:
    """Params with small models and few epochs; keyword sections override (merged per key)."""
    raw: dict[str, dict[str, Any]] = {
        "train": {
            "device": "cpu",
            "batch_size": 64,
            "checkpoint_every": 1,
            "log_images_every": 2,
            "num_workers": 0,
        },
        "vae": {"epochs": 3, "base_channels": 8, "latent_dim": 4, "kl_warmup_epochs": 2},
        "gan": {"epochs": 4, "base_channels": 8, "latent_dim": 8, "snapshots": 2},
    }
    for name, values in sections.items():
        raw.setdefault(name, {}).update(values)
    return Params.from_dict(raw)


@pytest.fixture
def train_paths(tmp_path: Path, digits_prepared: Path) -> Callable[[str], TrainPaths]:
    """Factory: fresh output/checkpoint/plots paths under tmp_path, named by `tag`."""

    def make(tag: str) -> TrainPaths:
        root = tmp_path / tag
        return TrainPaths(digits_prepared, root / "model", root / "checkpoints", root / "plots.csv")

    return make


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Tiny models: one thread avoids OpenMP spin-waits on a shared, busy CPU."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
