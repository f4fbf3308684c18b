"""Train one model end to end: data -> device -> (resume) -> epochs -> model files + MLflow run.

This is the pure-ish body behind the `train_vae` and `train_gan` stage CLIs; tests call it
directly with a shrunken config.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from genpipe import io, tracking
from genpipe.config import Params
from genpipe.data.dataset import PreparedData, load_prepared
from genpipe.models.checkpoint import save_model
from genpipe.training import checkpoint, device, loop
from genpipe.training.data import Batches
from genpipe.training.gan import GANTask
from genpipe.training.reporting import MlflowReporter, save_grid
from genpipe.training.vae import VAETask

log = logging.getLogger(__name__)

ModelName = Literal["vae", "gan"]


@dataclass(frozen=True)
class TrainPaths:
    prepared: Path
    out: Path  # data/models/<model>
    checkpoints: Path  # data/checkpoints/<model>
    plots: Path | None = None  # DVC plots CSV


@dataclass(frozen=True)
class TrainResult:
    run_id: str
    epoch: int
    metrics: dict[str, float]
    finished: bool


def run_config(model: ModelName, params: Params) -> dict[str, Any]:
    """The sections that shape a run: logged as params and compared on resume."""
    section = params.vae if model == "vae" else params.gan
    return {"train": params.train.model_dump(mode="json"), model: section.model_dump(mode="json")}


def _build_task(
    model: ModelName, params: Params, data: PreparedData, runtime: device.Runtime, paths: TrainPaths
):
    seed = params.train.seed
    if model == "vae":
        return VAETask(params.vae, data.image_shape, runtime, seed, data.val.as_float()[:32])
    meta = {"data_hash": data.data_hash, "dataset": data.meta.get("dataset")}
    snapshots = paths.checkpoints / "snapshots"
    return GANTask(params.gan, data.image_shape, runtime, seed, params.gan.epochs, snapshots, meta)


def _reopen_run_id(run_id: str | None) -> str | None:
    """The crashed run to continue, if it still exists in this tracking store."""
    if run_id is None:
        return None
    import mlflow

    tracking.configure_mlflow()
    try:
        mlflow.get_run(run_id)
    except Exception:
        log.info("MLflow run %s of the checkpoint is gone; starting a new run", run_id)
        return None
    return run_id


def train(
    model: ModelName,
    params: Params,
    paths: TrainPaths,
    *,
    stop_after: int | None = None,
    available: device.Available | None = None,
) -> TrainResult:
    """Train `model`; `stop_after` ends the run after that epoch as if killed (tests resume)."""
    data = load_prepared(paths.prepared)
    runtime = device.resolve(params.train, available)
    config = run_config(model, params)
    epochs = params.vae.epochs if model == "vae" else params.gan.epochs
    last = paths.checkpoints / "last.pt"
    task = _build_task(model, params, data, runtime, paths)
    order = torch.Generator().manual_seed(params.train.seed)
    generators = {"data_order": order}
    state = loop.FitState()
    if params.train.resume and last.exists():
        state = loop.restore(task, last, config, generators)
    else:
        if params.train.resume:
            log.info("train.resume is set but %s does not exist: starting from scratch", last)
        shutil.rmtree(paths.checkpoints / "snapshots", ignore_errors=True)
    batches = Batches(
        data.train.images,
        params.train.batch_size,
        runtime,
        order,
        params.train.max_device_bytes,
        params.train.num_workers,
    )
    val_x = data.val.as_float(runtime.device)
    reporter = MlflowReporter(paths.plots, task.grids)
    schedule = loop.Schedule(
        epochs, params.train.checkpoint_every, params.train.log_images_every, stop_after
    )
    run_id = _reopen_run_id(state.run_id)
    experiment = f"genpipe-{data.meta.get('dataset', 'unknown')}"
    tags = {
        "genpipe.stage": f"train_{model}",
        "genpipe.data_hash": data.data_hash,
        "genpipe.device": runtime.name,
    }
    threads = device.cpu_threads(
        params.train.cpu_threads, data.image_shape, torch.get_num_threads()
    )
    with (
        device.activated(runtime, threads),
        tracking.tracked_run(
            experiment, f"train_{model}", None if run_id else config, tags, run_id=run_id
        ) as run,
    ):
        state.run_id = run.info.run_id
        try:
            state = loop.fit(
                task,
                batches,
                val_x,
                schedule,
                state,
                reporter,
                lambda s: loop.save(task, last, config, s, generators),
            )
        except loop.DivergenceError as exc:
            kept = "no checkpoint (none was due yet)"
            if last.exists():
                kept = f"{last} (epoch {checkpoint.load(last)['epoch']})"
            raise loop.DivergenceError(
                f"{exc}. Training stopped; kept {kept}. Lower {model}.lr or check the data."
            ) from None
        metrics = {
            k: v for k, v in (state.history[-1] if state.history else {}).items() if k != "epoch"
        }
        finished = state.epoch >= epochs
        if finished:
            _export(model, task, data, paths, state, metrics, last)
    return TrainResult(state.run_id, state.epoch, metrics, finished)


def _export(
    model: ModelName,
    task: Any,
    data: PreparedData,
    paths: TrainPaths,
    state: loop.FitState,
    metrics: dict[str, float],
    last: Path,
) -> None:
    """Model file(s), preview PNGs and run.json in the model dir; the same files in MLflow."""
    import mlflow

    meta = {
        "epoch": state.epoch,
        "data_hash": data.data_hash,
        "dataset": data.meta.get("dataset"),
        "run_id": state.run_id,
        "metrics": metrics,
    }
    out = paths.out
    if model == "vae":
        save_model(out / "model.pt", task.model, "vae", meta)
    else:
        save_model(out / "model.pt", task.ema, "generator", meta)
        shutil.rmtree(out / "snapshots", ignore_errors=True)
        (out / "snapshots").mkdir(parents=True)
        for snap in sorted((paths.checkpoints / "snapshots").glob("epoch_*.pt")):
            shutil.copy2(snap, out / "snapshots" / snap.name)
            mlflow.log_artifact(str(snap), artifact_path="model/snapshots")
    for name, images in task.grids().items():
        save_grid(out / f"{name}.png", images)
    run = mlflow.active_run()
    io.write_json(
        out / "run.json",
        {
            "run_id": run.info.run_id,
            "experiment_id": run.info.experiment_id,
            "experiment_name": mlflow.get_experiment(run.info.experiment_id).name,
        },
    )
    mlflow.log_artifact(str(out / "model.pt"), artifact_path="model")
    mlflow.log_artifact(str(last), artifact_path="checkpoint")
    for png in sorted(out.glob("*.png")):
        mlflow.log_artifact(str(png))
    log.info(
        "%s: wrote %s (epoch %d, MLflow run %s)", model, out / "model.pt", state.epoch, state.run_id
    )
