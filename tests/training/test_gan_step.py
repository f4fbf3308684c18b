"""GANTask.train_step is the textbook D-then-G update, with D's weights frozen for the G step."""

from __future__ import annotations

import copy
from pathlib import Path

import torch

from genpipe.data.dataset import load_prepared
from genpipe.models.gan import discriminator_loss, generator_loss
from genpipe.training.optim import adam
from tests.params import tiny_params
from tests.training.helpers import build_task, whole


def test_gan_step_matches_a_plain_step_without_d_weight_grads_in_the_g_step(
    digits_prepared: Path, tmp_path: Path
) -> None:
    params = tiny_params()
    config = params.gan
    task = build_task("gan", params, digits_prepared, tmp_path)
    x = load_prepared(digits_prepared).train.as_float()[:16]
    x = x.contiguous(memory_format=torch.channels_last)
    y = torch.zeros(len(x), dtype=torch.long)
    # the reference: same initial weights and noise, a plain loop where the G step's backward
    # also runs through D's weights
    G, D = copy.deepcopy(task.G), copy.deepcopy(task.D)
    opt_g = adam(G.parameters(), config.lr.generator, config.betas, task.runtime)
    opt_d = adam(D.parameters(), config.lr.discriminator, config.betas, task.runtime)
    noise = torch.Generator().manual_seed(params.train.seed + 2)  # GANTask's noise seed
    for _ in range(3):  # several steps: D must still train after a frozen G step
        task.train_step(whole(x, y), 1)
        fake = G(torch.randn(len(x), config.latent_dim, generator=noise))
        d_real, d_fake = D(torch.cat([x, fake.detach()])).split(len(x))
        opt_d.zero_grad(set_to_none=True)
        discriminator_loss(config.loss, d_real, d_fake).loss.backward()
        opt_d.step()
        d_step_grads = [p.grad.clone() for p in D.parameters()]
        opt_g.zero_grad(set_to_none=True)
        generator_loss(config.loss, D(fake)).loss.backward()
        opt_g.step()

        assert all(p.requires_grad for p in task.D.parameters())
        # D's gradients are the D step's alone: the G step added nothing to them
        for got, want in zip((p.grad for p in task.D.parameters()), d_step_grads, strict=True):
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-7)
    for got, want in zip(task.G.parameters(), G.parameters(), strict=True):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    for got, want in zip(task.D.parameters(), D.parameters(), strict=True):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_losses_have_the_textbook_values() -> None:
    real, fake = torch.tensor([2.0, 0.5]), torch.tensor([-2.0, 0.5])
    hinge = discriminator_loss("hinge", real, fake)
    assert float(hinge.loss) == (0 + 0.5) / 2 + (0 + 1.5) / 2
    assert (float(hinge.d_real), float(hinge.d_fake)) == (1.25, -0.75)
    assert float(generator_loss("hinge", fake).loss) == 0.75
    ns = discriminator_loss("non_saturating", real, fake)
    want = torch.nn.functional.softplus(-real).mean() + torch.nn.functional.softplus(fake).mean()
    assert float(ns.loss) == float(want)
