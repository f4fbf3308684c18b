"""NaN/Inf losses stop training at once, name the epoch and the loss, keep the last good
checkpoint, and make the stage exit non-zero."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from genpipe.config import TrainConfig
from genpipe.data.dataset import load_prepared
from genpipe.stages import train_vae
from genpipe.training import checkpoint, device, loop
from genpipe.training.data import Batches
from genpipe.training.run import TrainPaths
from genpipe.training.vae import VAETask
from tests.training.conftest import tiny_params


class _NoReport:
    def log_epoch(self, epoch: int, metrics: dict[str, float], history: list[dict]) -> None:
        pass

    def log_images(self, epoch: int) -> None:
        pass


def test_poisoned_batch_stops_at_once_and_keeps_last_good_checkpoint(
    digits_prepared: Path, tmp_path: Path
) -> None:
    params = tiny_params()
    data = load_prepared(digits_prepared)
    runtime = device.resolve(TrainConfig(device="cpu"))
    task = VAETask(params.vae, data.image_shape, runtime, 0, data.val.as_float()[:8])
    order = torch.Generator().manual_seed(0)
    batches = Batches(data.train.images, 64, runtime, order, max_device_bytes=10**9)
    last = tmp_path / "last.pt"
    config = {"vae": params.vae.model_dump(mode="json")}

    def save(state: loop.FitState) -> None:
        loop.save(task, last, config, state, {"data_order": order})

    state = loop.fit(
        task,
        batches,
        data.val.as_float(),
        loop.Schedule(2, 1, 99),
        loop.FitState(),
        _NoReport(),
        save,
    )
    good = {k: v.clone() for k, v in task.model.state_dict().items()}
    assert batches.on_device is not None
    batches.on_device[7] = float("nan")  # one poisoned image: whichever batch holds it diverges
    steps_before = int(task.opt.state_dict()["state"][0]["step"])
    with pytest.raises(loop.DivergenceError, match=r"^epoch 3: train_loss is nan$"):
        loop.fit(
            task, batches, data.val.as_float(), loop.Schedule(5, 1, 99), state, _NoReport(), save
        )
    # stopped within epoch 3, before a full epoch of further steps
    assert int(task.opt.state_dict()["state"][0]["step"]) < steps_before + len(batches)
    record = checkpoint.load(last)
    assert record["epoch"] == 2
    assert all(torch.equal(record["state"]["model"][k], v) for k, v in good.items())


def test_stage_exits_nonzero_naming_epoch_and_loss(
    train_paths: Callable[[str], TrainPaths], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An absurd learning rate blows the weights up to inf within the first epoch."""
    paths = train_paths("diverge")
    params_file = tmp_path / "params.yaml"
    params_file.write_text(
        "train: {device: cpu, batch_size: 64, num_workers: 0}\n"
        "vae: {epochs: 3, base_channels: 8, latent_dim: 4, lr: 1.0e+30}\n"
    )
    args = {"params": params_file, "prepared": paths.prepared, "out": paths.out,
            "checkpoints": paths.checkpoints, "plots": paths.plots}  # fmt: skip
    argv = [item for key, value in args.items() for item in (f"--{key}", str(value))]
    assert train_vae.main(argv) == 2
    err = capsys.readouterr().err
    assert "genpipe train_vae: error: epoch 1: train_" in err
    assert "is nan." in err or "is inf." in err
    assert "kept no checkpoint" in err and "Lower vae.lr" in err
    assert not (paths.out / "model.pt").exists()
    assert not (paths.checkpoints / "last.pt").exists()
