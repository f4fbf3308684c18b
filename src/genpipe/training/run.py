"""Train one task end to end: data -> device -> (resume) -> epochs -> model files + MLflow run.

This is the body behind the `train` stage CLI for every model family; tests call it directly
with a shrunken config. A crashed run (killed, out of memory, power cut) resumes from its last
checkpoint on the next call with the same params, data and code, and continues its MLflow run.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, replace
from pathlib import Path

from genpipe import device, io, tracking
from genpipe.config import Params
from genpipe.data.dataset import PreparedData, load_prepared
from genpipe.training import checkpoint, distributed, loop, process
from genpipe.training.data import Batches
from genpipe.training.distributed import Ranks
from genpipe.training.reporting import MlflowReporter
from genpipe.training.task import TaskContext, get_task
from genpipe.training.workdir import WorkDir

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainPaths:
    prepared: Path
    out: Path  # data/models/<task>
    work: Path  # resume folders of this stage, e.g. .genpipe/work/train_<task>
    plots: Path | None = None  # DVC plots CSV


@dataclass(frozen=True)
class TrainResult:
    run_id: str
    epoch: int
    metrics: dict[str, float]  # the last epoch's
    exported: dict[str, float]  # the export's (e.g. the evaluator's test accuracy); {} unfinished
    finished: bool
    resumed_from: int  # epoch the run resumed after (0: from scratch)


def _start(task: loop.Task, work: WorkDir, ranks: Ranks) -> loop.FitState:
    """Resume from the work folder's checkpoint, or start clean (closing an orphaned run).

    Rank 0 reads the folder (on node 0's disk) and sends the checkpoint to the other ranks.
    """
    record = None
    if ranks.is_main:
        if work.last.exists():
            record = checkpoint.load(work.last, task.name, work.key)
        else:
            orphan = work.recorded_run()
            if orphan is not None:  # killed before its first checkpoint
                tracking.end_orphan(orphan)
            work.fresh()
    record = ranks.broadcast(record)
    if record is None:
        return loop.FitState()
    state = loop.resume(task, record)
    if ranks.is_main:
        log.info(
            "resuming %s from %s: epoch %d of %d done (an earlier run of this stage stopped)",
            task.name,
            work.last,
            state.epoch,
            task.epochs,
        )
        if not tracking.run_exists(state.run_id):
            log.info("its MLflow run %s is gone from this store; logging a new run", state.run_id)
            state.run_id = None
    return state


def train(
    task_name: str,
    params: Params,
    paths: TrainPaths,
    *,
    stop_after: int | None = None,
    available: device.Available | None = None,
) -> TrainResult:
    """Train `task_name`; `stop_after` ends the run after that epoch as if killed (tests).

    Under torchrun every process calls this; they form one data-parallel job.
    """
    data = load_prepared(paths.prepared)
    runtime = device.resolve(params.runtime, available)
    timeout = params.runtime.distributed.timeout_seconds
    with distributed.process_group(runtime.device, timeout) as ranks:
        runtime = replace(runtime, device=distributed.rank_device(runtime.device, ranks))
        return _train(task_name, params, paths, data, runtime, ranks, stop_after)


def _train(
    task_name: str,
    params: Params,
    paths: TrainPaths,
    data: PreparedData,
    runtime: device.Runtime,
    ranks: Ranks,
    stop_after: int | None,
) -> TrainResult:
    builder = get_task(task_name)
    config = builder.run_config(params)
    work = WorkDir.for_run(paths.work, task_name, config, data.data_hash)
    task = builder.build(params, data, TaskContext(runtime, work.path, ranks))
    state = _start(task, work, ranks)
    resumed_from = state.epoch
    batches = Batches(
        data.train.images,
        data.train.labels,
        task.batch_size,
        runtime,
        task.data_order,
        params.runtime.max_device_bytes,
        params.runtime.num_workers,
        task.drop_last,
        task.channels_last,
        ranks,
    )
    schedule = loop.Schedule(
        task.epochs, params.runtime.checkpoint_every, params.runtime.log_images_every, stop_after
    )
    tags = {
        "genpipe.data_hash": data.data_hash,
        "genpipe.device": runtime.name,
        "genpipe.processes": ranks.world,
    }
    stage = f"train_{task_name}"
    tracked = (
        tracking.live_run(stage, data.dataset, config, tags, run_id=state.run_id)
        if ranks.is_main
        else contextlib.nullcontext()
    )
    with device.cpu_threads(params.runtime), process.activated(runtime), tracked as run:
        logged = 0
        if run is not None:
            # a killed attempt logged the epochs after its last checkpoint already
            logged = tracking.logged_through(state.run_id) if state.run_id else 0
            state.run_id = run.info.run_id
            work.record_run(state.run_id, tracking.owner(), paths.out)
            tracking.log_dataset(
                run.info.run_id, data.dataset, paths.prepared, data.data_hash, stage
            )
        try:
            state = loop.fit(
                task,
                batches,
                schedule,
                state,
                MlflowReporter(paths.plots, task.grids, logged),
                lambda s: loop.save(task, work.last, work.key, s),
                ranks,
            )
        except loop.DivergenceError as exc:
            kept = f"{work.last}" if work.last.exists() else "no checkpoint (none was due yet)"
            raise loop.DivergenceError(
                f"{exc}. Training stopped; kept {kept}. Lower {task_name}.lr or check the data."
            ) from None
        metrics = {k: v for k, v in (state.history[-1] if state.history else {}).items()}
        metrics.pop("epoch", None)
        finished = state.epoch >= task.epochs
        exported = (
            _export(task, paths.out, state, run, work.key) if finished and run is not None else {}
        )
    ranks.barrier()  # the others wait for rank 0's outputs
    if finished and ranks.is_main:
        work.finish()
    return TrainResult(state.run_id or "", state.epoch, metrics, exported, finished, resumed_from)


def _export(task: loop.Task, out: Path, state: loop.FitState, run, key: str) -> dict[str, float]:
    """Model file(s) and previews in the model dir, the same files in MLflow, run.json."""
    import mlflow

    chosen = state.best_epoch if task.val_metric is not None else state.epoch
    exported = task.export(out, state.best_weights, chosen)
    io.write_json(
        out / "run.json",
        {
            "run_id": run.info.run_id,
            "experiment_id": run.info.experiment_id,
            "experiment_name": mlflow.get_experiment(run.info.experiment_id).name,
            "work_key": key,  # the resume folder this result came from (tracking.clean_orphans)
        },
    )
    mlflow.log_metrics({**exported.metrics, "exported_epoch": chosen})
    mlflow.set_tag("genpipe.exported_epoch", str(chosen))
    for path in exported.files:
        folder = path.parent.relative_to(out).as_posix()
        kind = "model" if path.suffix == ".pt" else None
        artifact_path = "/".join(p for p in (kind, folder if folder != "." else None) if p)
        mlflow.log_artifact(str(path), artifact_path=artifact_path or None)
    log.info(
        "%s: wrote %s (epoch %d of %d, MLflow run %s)",
        task.name,
        out / "model.pt",
        chosen,
        state.epoch,
        run.info.run_id,
    )
    return dict(exported.metrics)
