"""Tiny training configs: real models and loops, shrunk to run in seconds on a busy CPU."""

from __future__ import annotations

import shutil
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


@pytest.fixture(scope="session")
def migrated_mlflow_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty MLflow SQLite store with its schema created once per session."""
    import mlflow

    path = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"
    mlflow.MlflowClient(tracking_uri=f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture(autouse=True)
def prebuilt_store(isolated_stores: Path, migrated_mlflow_db: Path) -> None:
    """Seed each test's isolated store with the migrated schema: saves seconds per test."""
    shutil.copy(migrated_mlflow_db, isolated_stores / "mlflow.db")


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Tiny models: one thread avoids OpenMP spin-waits on a shared, busy CPU."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
