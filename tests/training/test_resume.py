"""Crash recovery without a flag: a run stopped after epoch k resumes from its work folder on the
next call and ends bit-identical (CPU) to an uninterrupted run; any change starts afresh."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import mlflow
import pytest
import torch

from genpipe.data.dataset import load_prepared
from genpipe.models.checkpoint import read_record
from genpipe.training import checkpoint
from genpipe.training.run import TrainPaths, train
from genpipe.training.task import get_task
from genpipe.training.workdir import WorkDir
from tests.params import tiny_params

PARAMS = {"runtime": {"checkpoint_every": 2}, "vae": {"epochs": 4}, "evaluator": {"epochs": 4}}


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return read_record(path)["state_dict"]


def _assert_same_outputs(a: TrainPaths, b: TrainPaths) -> None:
    files = sorted(p.relative_to(a.out) for p in a.out.rglob("*.pt"))
    assert files == sorted(p.relative_to(b.out) for p in b.out.rglob("*.pt"))
    for rel in files:
        wa, wb = _weights(a.out / rel), _weights(b.out / rel)
        differing = [k for k in wa if not torch.equal(wa[k], wb[k])]
        assert not differing, f"{rel}: tensors differ after resume: {differing[:5]}"
    assert a.plots.read_bytes() == b.plots.read_bytes()  # the loss curve, byte for byte


def _work(task: str, params, paths: TrainPaths) -> WorkDir:
    config = get_task(task).run_config(params)
    return WorkDir.for_run(paths.work, task, config, load_prepared(paths.prepared).data_hash)


@pytest.mark.parametrize("task", ["vae", "gan", "evaluator"])
def test_killed_then_rerun_resumes_and_equals_uninterrupted(
    task: str, train_paths: Callable[[str], TrainPaths]
) -> None:
    params = tiny_params(PARAMS)
    straight = train_paths("straight")
    full = train(task, params, straight)
    assert full.finished and full.resumed_from == 0

    crashed = train_paths("crashed")
    # Stopped after epoch 3: the last checkpoint is from epoch 2, so epoch 3 is redone.
    partial = train(task, params, crashed, stop_after=3)
    work = _work(task, params, crashed)
    assert not partial.finished
    assert checkpoint.load(work.last, task, work.key)["epoch"] == 2
    resumed = train(task, params, crashed)  # the same call as the first: no resume flag
    assert resumed.finished and resumed.resumed_from == 2 and resumed.epoch == full.epoch
    assert resumed.run_id == partial.run_id  # the interrupted MLflow run is continued
    client = mlflow.MlflowClient()
    assert client.get_run(resumed.run_id).info.status == "FINISHED"
    for key in client.get_run(resumed.run_id).data.metrics:  # epoch 3 was logged once, not twice
        steps = [m.step for m in client.get_metric_history(resumed.run_id, key)]
        assert len(steps) == len(set(steps)), (key, steps)
    _assert_same_outputs(straight, crashed)
    assert resumed.exported == full.exported
    assert not work.path.exists()  # a finished run leaves no work folder behind


def test_the_exported_vae_is_the_best_validation_epoch(
    train_paths: Callable[[str], TrainPaths],
) -> None:
    paths = train_paths("run")
    result = train("vae", tiny_params(PARAMS), paths)
    rows = paths.plots.read_text().splitlines()
    header, values = rows[0].split(","), [r.split(",") for r in rows[1:]]
    val = [float(v[header.index("val_loss")]) for v in values]
    best_epoch = 1 + val.index(min(val))
    assert read_record(paths.out / "model.pt")["meta"]["epoch"] == best_epoch
    run = mlflow.MlflowClient().get_run(result.run_id)
    assert run.data.tags["genpipe.exported_epoch"] == str(best_epoch)


def test_a_changed_config_starts_afresh_and_clears_the_stale_folder(
    train_paths: Callable[[str], TrainPaths],
) -> None:
    paths = train_paths("run")
    before = tiny_params(PARAMS)
    train("gan", before, paths, stop_after=2)
    stale = _work("gan", before, paths)
    assert stale.last.exists()
    changed = tiny_params({**PARAMS, "gan": {"lr": {"generator": 1e-3}}})
    result = train("gan", changed, paths)
    assert result.finished and result.resumed_from == 0
    assert not stale.path.exists()


def test_a_corrupt_checkpoint_is_named_with_the_fix(
    train_paths: Callable[[str], TrainPaths],
) -> None:
    paths = train_paths("run")
    params = tiny_params(PARAMS)
    work = _work("vae", params, paths)
    work.path.mkdir(parents=True)
    work.last.write_bytes(b"not a zip")
    with pytest.raises(checkpoint.ResumeError, match=r"(?s)last\.pt: unreadable.*delete it"):
        train("vae", params, paths)


def test_a_run_killed_before_its_first_checkpoint_is_marked_failed(
    train_paths: Callable[[str], TrainPaths],
) -> None:
    """A SIGKILL leaves the MLflow run RUNNING; the next attempt closes it before starting."""
    paths = train_paths("run")
    params = tiny_params(PARAMS)
    from genpipe import tracking

    with tracking.live_run("train_vae", "digits") as run:
        orphan = run.info.run_id
    mlflow.MlflowClient().update_run(orphan, status="RUNNING")  # as a killed process leaves it
    _work("vae", params, paths).record_run(orphan, "gone-host:1:0", paths.out)
    result = train("vae", params, paths)
    client = mlflow.MlflowClient()
    assert client.get_run(orphan).info.status == "FAILED"
    assert client.get_run(orphan).data.tags["genpipe.status"] == "crashed"
    assert result.run_id != orphan
    assert client.get_run(result.run_id).info.status == "FINISHED"
