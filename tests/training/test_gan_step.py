"""GANTask.train_step is the textbook D-then-G update, with D's weights frozen for the G step."""

from __future__ import annotations

import copy
from pathlib import Path

import torch

from genpipe.config import GANConfig, TrainConfig
from genpipe.data.dataset import Split
from genpipe.training import device
from genpipe.training.gan import GANTask, d_loss_fn, g_loss_fn

RUNTIME = device.resolve(TrainConfig(device="cpu"))


def test_gan_step_matches_a_plain_step_without_d_weight_grads_in_the_g_step(
    digits_splits: dict, tmp_path: Path
) -> None:
    split: Split = digits_splits["train"]
    x = split.as_float()[:16].contiguous(memory_format=torch.channels_last)
    config = GANConfig(base_channels=8, latent_dim=8)
    task = GANTask(config, (1, 8, 8), RUNTIME, 0, epochs=1, snapshot_dir=tmp_path)
    # the reference: same initial weights and noise, a plain loop where the G step's backward
    # also runs through D's weights (the seed's style)
    G, D = copy.deepcopy(task.G), copy.deepcopy(task.D)
    opt_g = device.adam(G.parameters(), config.lr.generator, config.betas, RUNTIME)
    opt_d = device.adam(D.parameters(), config.lr.discriminator, config.betas, RUNTIME)
    noise = torch.Generator().manual_seed(0 + 2)  # GANTask's noise seed
    for _ in range(3):  # several steps: D must still train after a frozen G step
        task.train_step(x, 1)
        fake = G(torch.randn(len(x), config.latent_dim, generator=noise))
        d_real, d_fake = D(torch.cat([x, fake.detach()])).split(len(x))
        opt_d.zero_grad(set_to_none=True)
        d_loss_fn(config.loss, d_real, d_fake).backward()
        opt_d.step()
        d_step_grads = [p.grad.clone() for p in D.parameters()]
        opt_g.zero_grad(set_to_none=True)
        g_loss_fn(config.loss, D(fake)).backward()
        opt_g.step()

        assert all(p.requires_grad for p in task.D.parameters())
        # D's gradients are the D step's alone: the G step added nothing to them
        for got, want in zip((p.grad for p in task.D.parameters()), d_step_grads, strict=True):
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-7)
    for got, want in zip(task.G.parameters(), G.parameters(), strict=True):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    for got, want in zip(task.D.parameters(), D.parameters(), strict=True):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
