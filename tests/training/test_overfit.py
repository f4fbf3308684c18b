"""Each model can fit a fixed small batch: the training signal actually reaches the weights."""

from __future__ import annotations

from pathlib import Path

import torch

from genpipe.data.dataset import load_prepared
from tests.params import tiny_params
from tests.training.helpers import build_task, whole


def _batch(prepared: Path, n: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    train = load_prepared(prepared).train
    x = train.as_float()[:n].contiguous(memory_format=torch.channels_last)
    return x, torch.from_numpy(train.labels[:n])


def test_vae_overfits_a_fixed_batch(digits_prepared: Path, tmp_path: Path) -> None:
    x, y = _batch(digits_prepared)
    params = tiny_params({"vae": {"kl_warmup_epochs": 0, "lr": 3e-3}})
    task = build_task("vae", params, digits_prepared, tmp_path)
    first = float(task.train_step(whole(x, y), 1)["train_loss"])
    for _ in range(150):
        last = float(task.train_step(whole(x, y), 1)["train_loss"])
    assert last < first - 20, (first, last)  # nats per image


def test_gan_generator_moves_onto_a_fixed_batch(digits_prepared: Path, tmp_path: Path) -> None:
    """A GAN has no loss that must fall; what must fall is the distance from samples to the data."""
    x, y = _batch(digits_prepared)
    params = tiny_params(
        {"gan": {"ema_decay": 0.9, "lr": {"generator": 2e-3, "discriminator": 2e-3}}}
    )
    task = build_task("gan", params, digits_prepared, tmp_path)

    def distance() -> float:  # mean squared distance of EMA samples to their nearest real image
        fake = task.grids()["samples"].flatten(1)
        return float(torch.cdist(fake, x.flatten(1)).min(dim=1).values.pow(2).mean())

    before = distance()
    for _ in range(150):
        losses = task.train_step(whole(x, y), 1)
    assert distance() < 0.6 * before, (before, distance())
    assert float(losses["d_real"]) > float(losses["d_fake"])  # D separates real from fake


def test_evaluator_fits_a_fixed_batch(digits_prepared: Path, tmp_path: Path) -> None:
    x, y = _batch(digits_prepared, 64)
    params = tiny_params({"evaluator": {"augment": False, "epochs": 10}})
    task = build_task("evaluator", params, digits_prepared, tmp_path)
    first = float(task.train_step(whole(x, y), 1)["train_loss"])
    for _ in range(60):
        last = float(task.train_step(whole(x, y), 1)["train_loss"])
    assert last < 0.5 * first, (first, last)
    assert (task.model(x).argmax(1) == y).float().mean() > 0.9
