"""GAN training task: D and G steps on real data vs. G(z), TTUR, and an EMA generator.

The EMA generator (Polyak averaging of G's weights, BN buffers copied) is what gets evaluated
and served: it is smoother than the raw G. Snapshots of it over the second half of training
let evaluation pick the best epoch on validation, since GAN quality can degrade late.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from genpipe.config import GANConfig
from genpipe.models.checkpoint import save_model
from genpipe.models.gan import Discriminator, Generator
from genpipe.training.device import Runtime, adam, prepare_module

N_GRID = 64


def snapshot_epochs(epochs: int, n: int) -> list[int]:
    """n epochs evenly spread over the second half of training, the last one included."""
    half = epochs / 2
    return sorted({max(1, round(half + (i + 1) * half / n)) for i in range(n)})


def d_loss_fn(kind: str, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    if kind == "hinge":
        return F.relu(1 - real).mean() + F.relu(1 + fake).mean()
    return F.softplus(-real).mean() + F.softplus(fake).mean()  # non-saturating BCE


def g_loss_fn(kind: str, fake: torch.Tensor) -> torch.Tensor:
    return -fake.mean() if kind == "hinge" else F.softplus(-fake).mean()


class GANTask:
    name = "gan"
    val_metric = None  # no likelihood: snapshots + the evaluate stage pick the best instead

    def __init__(
        self,
        config: GANConfig,
        image_shape: tuple[int, int, int],
        runtime: Runtime,
        seed: int,
        epochs: int,
        snapshot_dir: Path,
        snapshot_meta: dict[str, Any] | None = None,
    ) -> None:
        torch.manual_seed(seed)  # weight init
        self.config = config
        self.runtime = runtime
        self.G = prepare_module(Generator(config, image_shape), runtime)
        self.D = prepare_module(Discriminator(config, image_shape), runtime)
        self.ema = copy.deepcopy(self.G).eval().requires_grad_(False)
        self.g_forward = torch.compile(self.G) if runtime.compile else self.G
        self.d_forward = torch.compile(self.D) if runtime.compile else self.D
        self.opt_g = adam(self.G.parameters(), config.lr.generator, config.betas, runtime)
        self.opt_d = adam(self.D.parameters(), config.lr.discriminator, config.betas, runtime)
        self.noise = torch.Generator(runtime.device).manual_seed(seed + 2)
        fixed = torch.Generator().manual_seed(seed + 1)
        self.fixed_z = torch.randn(N_GRID, config.latent_dim, generator=fixed).to(runtime.device)
        self.snapshots = set(snapshot_epochs(epochs, config.snapshots))
        self.snapshot_dir = snapshot_dir
        self.snapshot_meta = snapshot_meta or {}
        self._ema_pairs = list(zip(self.ema.parameters(), self.G.parameters(), strict=True))

    def generators(self) -> dict[str, torch.Generator]:
        return {"noise": self.noise}

    def state_dict(self) -> dict[str, Any]:
        return {
            "G": self.G.state_dict(),
            "D": self.D.state_dict(),
            "ema": self.ema.state_dict(),
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.G.load_state_dict(state["G"])
        self.D.load_state_dict(state["D"])
        self.ema.load_state_dict(state["ema"])
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])

    def _z(self, n: int) -> torch.Tensor:
        return torch.randn(
            n, self.config.latent_dim, generator=self.noise, device=self.runtime.device
        )

    def train_step(self, x: torch.Tensor, epoch: int) -> dict[str, torch.Tensor]:
        kind = self.config.loss
        for _ in range(self.config.d_steps):  # extra D steps reuse the real batch, fresh z
            with self.runtime.autocast():
                fake = self.g_forward(self._z(len(x)))  # [B, C, H, W] in [0, 1]
                # one D pass over [real; fake] (D has no batch norm): half the small ops
                d_real, d_fake = self.d_forward(torch.cat([x, fake.detach()])).split(len(x))
                d_loss = d_loss_fn(kind, d_real, d_fake)
            self.opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            self.opt_d.step()
        # G step on the last fakes, against the updated D. D's weights are frozen for it:
        # their gradients would be discarded, and skipping them saves a third of D's backward.
        self.D.requires_grad_(False)
        try:
            with self.runtime.autocast():
                g_loss = g_loss_fn(kind, self.d_forward(fake))
            self.opt_g.zero_grad(set_to_none=True)
            g_loss.backward()
        finally:
            self.D.requires_grad_(True)
        self.opt_g.step()
        self._update_ema()
        return {
            "d_loss": d_loss.detach(),
            "g_loss": g_loss.detach(),
            "d_real": d_real.detach().float().mean(),
            "d_fake": d_fake.detach().float().mean(),
        }

    @torch.no_grad()
    def _update_ema(self) -> None:
        ema, live = zip(*self._ema_pairs, strict=True)
        torch._foreach_lerp_(list(ema), list(live), 1.0 - self.config.ema_decay)
        for b_ema, b in zip(self.ema.buffers(), self.G.buffers(), strict=True):
            b_ema.copy_(b)

    @torch.no_grad()
    def validate(self, x: torch.Tensor) -> dict[str, float]:
        """D's mean score on held-out reals vs. EMA fakes: a widening gap to the train
        scores means D memorises the training set."""
        self.D.eval()  # no spectral-norm power iteration: validation must not change D
        real = torch.cat([self.D(chunk).float() for chunk in x.split(1024)]).mean()
        fake = self.D(self.ema(self.fixed_z)).float().mean()
        self.D.train()
        return {"val_d_real": float(real), "val_d_fake_ema": float(fake)}

    def end_epoch(self, epoch: int) -> None:
        if epoch in self.snapshots:
            meta = {**self.snapshot_meta, "epoch": epoch}
            save_model(self.snapshot_dir / f"epoch_{epoch:04d}.pt", self.ema, "generator", meta)

    @torch.no_grad()
    def grids(self) -> dict[str, torch.Tensor]:
        return {"samples": self.ema(self.fixed_z)}
