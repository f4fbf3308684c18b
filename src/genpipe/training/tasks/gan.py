"""GAN training task: D and G steps on real data vs. G(z), TTUR, and an EMA generator.

The EMA generator (Polyak averaging of G's weights, BN buffers copied) is what gets evaluated
and served: it is smoother than the raw G. Snapshots of it over the second half of training
let evaluation pick the best epoch on validation, since GAN quality can degrade late; they are
kept in the run's work folder until export, so a resumed run still has the earlier ones.
"""

from __future__ import annotations

import contextlib
import copy
import shutil
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch

from genpipe.config import GANConfig, Params, TrainConfig
from genpipe.data.dataset import PreparedData
from genpipe.device import prepare_module
from genpipe.grids import save_grid
from genpipe.models.checkpoint import save_model
from genpipe.models.gan import Discriminator, Generator, discriminator_loss, generator_loss
from genpipe.training import distributed
from genpipe.training.data import Batch
from genpipe.training.optim import adam
from genpipe.training.task import Exported, TaskContext

N_GRID = 64


def snapshot_epochs(epochs: int, n: int) -> list[int]:
    """n epochs evenly spread over the second half of training, the last one included."""
    half = epochs / 2
    return sorted({max(1, round(half + (i + 1) * half / n)) for i in range(n)})


class GANTask:
    name: ClassVar[str] = "gan"
    val_metric: ClassVar[str | None] = None  # no likelihood: snapshots + evaluate pick instead
    val_mode: ClassVar[Literal["min", "max"]] = "min"
    drop_last = True

    def __init__(
        self, train: TrainConfig, config: GANConfig, data: PreparedData, context: TaskContext
    ) -> None:
        runtime = context.runtime
        torch.manual_seed(train.seed)  # weight init
        self.config, self.runtime = config, runtime
        self.epochs, self.batch_size = config.epochs, config.batch_size or train.batch_size
        self.channels_last = runtime.channels_last
        self.ranks = context.ranks
        generator = Generator(config, data.image_shape)
        if self.ranks.active:  # batch statistics of the global batch, as one process has them
            generator = distributed.global_batch_norm(generator)
        self.G = prepare_module(generator, runtime)
        self.D = prepare_module(Discriminator(config, data.image_shape), runtime)
        self.ema = copy.deepcopy(self.G).eval().requires_grad_(False)
        g_train, d_train = (
            distributed.wrap(self.G, self.ranks),
            distributed.wrap(self.D, self.ranks),
        )
        self.g_forward = torch.compile(g_train) if runtime.compile else g_train
        self.d_forward = torch.compile(d_train) if runtime.compile else d_train
        # the G step runs D frozen and unwrapped: no gradients of D to reduce there
        self.d_frozen = torch.compile(self.D) if runtime.compile else self.D
        self.opt_g = adam(self.G.parameters(), config.lr.generator, config.betas, runtime)
        self.opt_d = adam(self.D.parameters(), config.lr.discriminator, config.betas, runtime)
        self.noise = torch.Generator(runtime.device).manual_seed(train.seed + 2)
        fixed = torch.Generator().manual_seed(train.seed + 1)
        self.fixed_z = torch.randn(N_GRID, config.latent_dim, generator=fixed).to(runtime.device)
        self.snapshots = set(snapshot_epochs(config.epochs, config.snapshots))
        self.snapshot_dir = context.work / "snapshots"
        self.meta = {"data_hash": data.data_hash, "dataset": data.meta.get("dataset")}
        self._ema_pairs = list(zip(self.ema.parameters(), self.G.parameters(), strict=True))
        self.val_x = data.val.as_float(runtime.device)
        self.data_order = torch.Generator().manual_seed(train.seed)

    @classmethod
    def build(cls, params: Params, data: PreparedData, context: TaskContext) -> GANTask:
        return cls(params.train, params.gan, data, context)

    @classmethod
    def run_config(cls, params: Params) -> dict[str, Any]:
        return {
            "train": params.train.model_dump(mode="json"),
            "gan": params.gan.model_dump(mode="json"),
        }

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

    def _z(self, batch: Batch) -> torch.Tensor:
        """This rank's rows of the global batch's latents."""
        z = torch.randn(
            batch.size, self.config.latent_dim, generator=self.noise, device=self.runtime.device
        )
        return z[batch.rows]

    def train_step(self, batch: Batch, epoch: int) -> dict[str, torch.Tensor]:
        kind, x = self.config.loss, batch.x
        for step in range(self.config.d_steps):  # extra D steps reuse the real batch, fresh z
            last = step == self.config.d_steps - 1
            with self.runtime.autocast(), contextlib.nullcontext() if last else torch.no_grad():
                # only the last fakes feed the G step; earlier ones need no graph through G
                fake = (self.g_forward if last else self.G)(self._z(batch))  # [b, C, H, W]
            with self.runtime.autocast():
                # one D pass over [real; fake] (D has no batch norm): half the small ops
                d_real, d_fake = self.d_forward(torch.cat([x, fake.detach()])).split(len(x))
                d_out = discriminator_loss(kind, d_real, d_fake)
            self.opt_d.zero_grad(set_to_none=True)
            (d_out.loss if batch.weight == 1 else d_out.loss * batch.weight).backward()
            self.opt_d.step()
        # G step on the last fakes, against the updated D. D's weights are frozen for it:
        # their gradients would be discarded, and skipping them saves a third of D's backward.
        self.D.requires_grad_(False)
        try:
            with self.runtime.autocast():
                g_out = generator_loss(kind, self.d_frozen(fake))
            self.opt_g.zero_grad(set_to_none=True)
            (g_out.loss if batch.weight == 1 else g_out.loss * batch.weight).backward()
        finally:
            self.D.requires_grad_(True)
        self.opt_g.step()
        self._update_ema()
        return {
            "d_loss": d_out.loss.detach(),
            "g_loss": g_out.loss.detach(),
            "d_real": d_out.d_real,
            "d_fake": d_out.d_fake,
        }

    @torch.no_grad()
    def _update_ema(self) -> None:
        ema, live = zip(*self._ema_pairs, strict=True)
        torch._foreach_lerp_(list(ema), list(live), 1.0 - self.config.ema_decay)
        for b_ema, b in zip(self.ema.buffers(), self.G.buffers(), strict=True):
            b_ema.copy_(b)

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """D's mean score on held-out reals vs. EMA fakes: a widening gap to the train
        scores means D memorises the training set."""
        self.D.eval()  # no spectral-norm power iteration: validation must not change D
        real = torch.cat([self.D(chunk).float() for chunk in self.val_x.split(1024)]).mean()
        fake = self.D(self.ema(self.fixed_z)).float().mean()
        self.D.train()
        return {"val_d_real": float(real), "val_d_fake_ema": float(fake)}

    def end_epoch(self, epoch: int) -> None:
        if epoch not in self.snapshots:
            return
        # every rank must hold the same EMA generator and spectral-norm state by now
        distributed.check_in_sync(self.ranks, f"the EMA generator at epoch {epoch}", self.ema)
        distributed.check_in_sync(self.ranks, f"the discriminator at epoch {epoch}", self.D)
        if self.ranks.is_main:
            meta = {**self.meta, "epoch": epoch}
            save_model(self.snapshot_dir / f"epoch_{epoch:04d}.pt", self.ema, "generator", meta)

    @torch.no_grad()
    def grids(self) -> dict[str, torch.Tensor]:
        return {"samples": self.ema(self.fixed_z)}

    def exportable(self) -> torch.nn.Module:
        return self.ema

    def export(self, out: Path, weights: dict[str, torch.Tensor] | None, epoch: int) -> Exported:
        """The final EMA generator, its snapshots (evaluate picks one on val) and a sample grid."""
        save_model(out / "model.pt", self.ema, "generator", {**self.meta, "epoch": epoch})
        files = [out / "model.pt"]
        shutil.rmtree(out / "snapshots", ignore_errors=True)
        (out / "snapshots").mkdir(parents=True)
        for snap in sorted(self.snapshot_dir.glob("epoch_*.pt")):
            shutil.copy2(snap, out / "snapshots" / snap.name)
            files.append(out / "snapshots" / snap.name)
        for name, images in self.grids().items():
            save_grid(out / f"{name}.png", images)
            files.append(out / f"{name}.png")
        return Exported(files)


TASK = GANTask
