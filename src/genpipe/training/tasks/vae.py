"""VAE training task: one Adam step on the ELBO, with a linear KL warm-up; exported at the
epoch with the best validation ELBO, with its sampling prior (vae.prior) fitted to that model."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal

import torch

from genpipe.config import Params, TrainConfig, VAEConfig
from genpipe.data.dataset import PreparedData
from genpipe.device import prepare_module
from genpipe.grids import save_grid
from genpipe.models.checkpoint import save_model
from genpipe.models.vae import VAE
from genpipe.training import distributed
from genpipe.training.data import Batch
from genpipe.training.optim import adam
from genpipe.training.task import Exported, TaskContext

N_GRID = 64


class VAETask:
    name: ClassVar[str] = "vae"
    val_metric: ClassVar[str | None] = "val_loss"
    val_mode: ClassVar[Literal["min", "max"]] = "min"
    drop_last = True

    def __init__(
        self, train: TrainConfig, config: VAEConfig, data: PreparedData, context: TaskContext
    ) -> None:
        runtime = context.runtime
        torch.manual_seed(train.seed)  # weight init
        self.config, self.runtime = config, runtime
        self.epochs, self.batch_size = config.epochs, config.batch_size or train.batch_size
        self.seed = train.seed  # also seeds the grid latents and the mixture prior's fit
        self.channels_last = runtime.channels_last
        self.meta = {"data_hash": data.data_hash, "dataset": data.meta.get("dataset")}
        self.model = prepare_module(VAE(config, data.image_shape), runtime)
        trained = distributed.wrap(self.model, context.ranks)
        self.forward = torch.compile(trained) if runtime.compile else trained
        self.opt = adam(self.model.parameters(), config.lr, (0.9, 0.999), runtime)
        self.train_split = data.train  # the mixture prior is fitted to its latents at export
        self.val_x = data.val.as_float(runtime.device)
        self.grid_images = data.val.as_float()[: N_GRID // 2].to(runtime.device)
        self.data_order = torch.Generator().manual_seed(train.seed)

    @classmethod
    def build(cls, params: Params, data: PreparedData, context: TaskContext) -> VAETask:
        return cls(params.train, params.vae, data, context)

    @classmethod
    def run_config(cls, params: Params) -> dict[str, Any]:
        return {
            "train": params.train.model_dump(mode="json"),
            "vae": params.vae.model_dump(mode="json"),
        }

    def kl_weight(self, epoch: int) -> float:
        """Linear warm-up from 1/W at epoch 1 to 1 at epoch W (avoids early posterior collapse)."""
        warm = self.config.kl_warmup_epochs
        return 1.0 if warm == 0 else min(1.0, epoch / warm)

    def generators(self) -> dict[str, torch.Generator]:
        return {}  # the reparameterisation noise uses the (saved) global torch RNG

    def state_dict(self) -> dict[str, Any]:
        return {"model": self.model.state_dict(), "opt": self.opt.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["opt"])

    def train_step(self, batch: Batch, epoch: int) -> dict[str, torch.Tensor]:
        # the global batch's noise, sliced: every process count draws the same numbers
        eps = torch.randn(batch.size, self.config.latent_dim, device=batch.x.device)[batch.rows]
        with self.runtime.autocast():
            out = self.forward(batch.x, self.kl_weight(epoch), eps)
        self.opt.zero_grad(set_to_none=True)
        (out.loss if batch.weight == 1 else out.loss * batch.weight).backward()
        self.opt.step()
        return {
            "train_loss": out.loss.detach(),
            "train_recon": out.recon_loss.detach(),
            "train_kl": out.kl.detach(),
        }

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """The full ELBO (KL weight 1) on the validation split, so epochs are comparable."""
        self.model.eval()
        totals = torch.zeros(3, device=self.runtime.device)
        for chunk in self.val_x.split(1024):
            with self.runtime.autocast():
                out = self.model(chunk, 1.0)
            totals += torch.stack([out.loss, out.recon_loss, out.kl]).float() * len(chunk)
        self.model.train()
        loss, recon, kl = (totals / len(self.val_x)).tolist()
        return {"val_loss": loss, "val_recon": recon, "val_kl": kl}

    def end_epoch(self, epoch: int) -> None:
        pass

    @torch.no_grad()
    def grids(self) -> dict[str, torch.Tensor]:
        """samples from fixed latents of the sampling prior; recon rows alternate originals and
        reconstructions."""
        self.model.eval()
        fixed = torch.Generator().manual_seed(self.seed + 1)
        samples = self.model.sample(N_GRID, fixed)
        x = self.grid_images[: max(8, len(self.grid_images) // 8 * 8)]
        recon = self.model.reconstruct(x)
        self.model.train()
        if len(x) % 8:  # too few validation images for paired rows
            return {"samples": samples, "recon": torch.cat([x, recon])}
        rows = torch.stack([x.view(-1, 8, *x.shape[1:]), recon.view(-1, 8, *x.shape[1:])], dim=1)
        return {"samples": samples, "recon": rows.flatten(0, 2)}  # [2 * len(x), C, H, W]

    def exportable(self) -> torch.nn.Module:
        return self.model

    def export(self, out: Path, weights: dict[str, torch.Tensor] | None, epoch: int) -> Exported:
        if weights is not None:
            self.model.load_state_dict(weights)
        self.model.fit_prior(self.train_split.as_float(self.runtime.device), self.seed)
        save_model(out / "model.pt", self.model, "vae", {**self.meta, "epoch": epoch})
        files = [out / "model.pt"]
        for name, images in self.grids().items():
            save_grid(out / f"{name}.png", images)
            files.append(out / f"{name}.png")
        return Exported(files)


TASK = VAETask
