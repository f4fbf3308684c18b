"""Each model can fit a fixed small batch: the training signal actually reaches the weights."""

from __future__ import annotations

from pathlib import Path

import torch

from genpipe.config import GANConfig, TrainConfig, VAEConfig
from genpipe.data.dataset import Split
from genpipe.training import device
from genpipe.training.gan import GANTask
from genpipe.training.vae import VAETask

RUNTIME = device.resolve(TrainConfig(device="cpu"))


def _batch(digits_splits: dict, n: int = 16) -> torch.Tensor:
    split: Split = digits_splits["train"]
    return split.as_float()[:n].contiguous(memory_format=torch.channels_last)


def test_vae_overfits_a_fixed_batch(digits_splits: dict) -> None:
    x = _batch(digits_splits)
    config = VAEConfig(base_channels=8, latent_dim=4, kl_warmup_epochs=0, lr=3e-3)
    task = VAETask(config, (1, 8, 8), RUNTIME, 0, x)
    first = float(task.train_step(x, 1)["train_loss"])
    for _ in range(150):
        last = float(task.train_step(x, 1)["train_loss"])
    assert last < 0.7 * first, (first, last)  # Bernoulli NLL + KL per image: 44 -> 24 nats here


def test_gan_generator_moves_onto_a_fixed_batch(digits_splits: dict, tmp_path: Path) -> None:
    """A GAN has no loss that must fall; what must fall is the distance from samples to the data."""
    x = _batch(digits_splits)
    config = GANConfig(
        base_channels=8, latent_dim=8, ema_decay=0.9, lr={"generator": 2e-3, "discriminator": 2e-3}
    )
    task = GANTask(config, (1, 8, 8), RUNTIME, 0, epochs=1, snapshot_dir=tmp_path)

    def distance() -> float:  # mean squared distance of EMA samples to their nearest real image
        fake = task.grids()["samples"].flatten(1)
        return float(torch.cdist(fake, x.flatten(1)).min(dim=1).values.pow(2).mean())

    before = distance()
    for _ in range(150):
        losses = task.train_step(x, 1)
    assert distance() < 0.6 * before, (before, distance())  # 9.8 -> 4.6 here
    assert float(losses["d_real"]) > float(losses["d_fake"])  # D separates real from fake
