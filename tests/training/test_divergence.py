"""NaN/Inf losses stop training at once, name the epoch and the loss, keep the last good
checkpoint, and make the stage exit non-zero."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import yaml

from genpipe.stages import train as train_stage
from genpipe.training import checkpoint, loop
from genpipe.training.run import TrainPaths
from tests.params import TINY, merge, raw_params, tiny_params
from tests.training.helpers import batches_for, build_task


class _NoReport:
    def log_epoch(self, epoch: int, metrics: dict[str, float], history: list[dict]) -> None:
        pass

    def log_images(self, epoch: int) -> None:
        pass


def test_poisoned_batch_stops_at_once_and_keeps_last_good_checkpoint(
    digits_prepared: Path, tmp_path: Path
) -> None:
    params = tiny_params()
    task = build_task("vae", params, digits_prepared, tmp_path)
    batches = batches_for(task, params, digits_prepared)
    last = tmp_path / "last.pt"

    def save(state: loop.FitState) -> None:
        loop.save(task, last, "key", state)

    state = loop.fit(task, batches, loop.Schedule(2, 1, 99), loop.FitState(), _NoReport(), save)
    good = {k: v.clone() for k, v in task.model.state_dict().items()}
    assert batches.on_device is not None
    batches.on_device[0][7] = float("nan")  # one poisoned image: its batch diverges
    steps_before = int(task.opt.state_dict()["state"][0]["step"])
    with pytest.raises(loop.DivergenceError, match=r"^epoch 3: train_loss is nan$"):
        loop.fit(task, batches, loop.Schedule(5, 1, 99), state, _NoReport(), save)
    # stopped within epoch 3, before a full epoch of further steps
    assert int(task.opt.state_dict()["state"][0]["step"]) < steps_before + len(batches)
    record = checkpoint.load(last, "vae", "key")
    assert record["epoch"] == 2
    assert all(torch.equal(record["state"]["model"][k], v) for k, v in good.items())


def test_stage_exits_nonzero_naming_epoch_and_loss(
    train_paths: Callable[[str], TrainPaths], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An absurd learning rate blows the weights up to inf within the first epoch."""
    paths = train_paths("diverge")
    params_file = tmp_path / "params.yaml"
    absurd = merge(merge(raw_params(), TINY), {"vae": {"lr": 1.0e30}})
    params_file.write_text(yaml.safe_dump(absurd))
    argv = ["--task", "vae", "--params", str(params_file), "--prepared", str(paths.prepared)]
    argv += ["--out", str(paths.out), "--work", str(paths.work), "--plots", str(paths.plots)]
    assert train_stage.main(argv) == 2
    err = capsys.readouterr().err
    assert "genpipe train_vae: error: epoch 1: train_" in err
    assert "is nan." in err or "is inf." in err
    assert "kept no checkpoint" in err and "Lower vae.lr" in err
    assert not (paths.out / "model.pt").exists()
    assert not list(paths.work.rglob("last.pt"))
