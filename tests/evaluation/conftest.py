"""Tiny real models and data for the evaluation tests (8x8 digits, a few channels)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from genpipe.models import save_model
from genpipe.models.classifier import Classifier
from genpipe.models.gan import Generator
from genpipe.models.vae import VAE
from tests.params import section

SHAPE = (1, 8, 8)


@pytest.fixture
def tiny_vae() -> VAE:
    torch.manual_seed(0)
    return VAE(section("vae", latent_dim=4, base_channels=8), SHAPE).eval()


@pytest.fixture
def tiny_generator() -> Generator:
    torch.manual_seed(1)
    return Generator(section("gan", latent_dim=4, base_channels=8), SHAPE).eval()


@pytest.fixture
def tiny_classifier() -> Classifier:
    torch.manual_seed(2)
    return Classifier(section("evaluator", feature_dim=16), SHAPE, n_classes=10).eval()


@pytest.fixture
def digits_test(digits_splits: dict) -> torch.Tensor:
    """The 360 real test digits as float [N, 1, 8, 8] in [0, 1]."""
    return digits_splits["test"].as_float()


def write_run_json(model_dir: Path, run_id: str, experiment_id: str, name: str) -> None:
    model_dir.mkdir(parents=True, exist_ok=True)
    record = {"run_id": run_id, "experiment_id": experiment_id, "experiment_name": name}
    (model_dir / "run.json").write_text(json.dumps(record))


def save_tiny_models(root: Path, vae: VAE, generator: Generator, n_snapshots: int = 2) -> None:
    """data/models/{vae,gan} as the training stages write them (model files, snapshots)."""
    save_model(root / "vae" / "model.pt", vae, "vae")
    save_model(root / "gan" / "model.pt", generator, "generator")
    for epoch in range(1, n_snapshots + 1):
        with torch.no_grad():  # distinct snapshots: scale the last layer's weights
            snap = Generator(generator.config, generator.image_shape)
            snap.load_state_dict(generator.state_dict())
            snap.body[-2].weight.mul_(epoch / n_snapshots)
        save_model(root / "gan" / "snapshots" / f"epoch_{epoch:04d}.pt", snap.eval(), "generator")
