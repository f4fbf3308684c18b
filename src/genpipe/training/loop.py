"""The model-agnostic epoch loop: steps, NaN/Inf guard, validation, best epoch, reporting,
checkpoints.

A model family plugs in as a `Task` (training/task.py); the loop owns the order of events in an
epoch, so resume, divergence handling and the choice of the exported epoch are written once.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch

from genpipe.errors import GenpipeError
from genpipe.training import checkpoint
from genpipe.training.data import Batches
from genpipe.training.distributed import Ranks
from genpipe.training.task import Task

log = logging.getLogger(__name__)


class DivergenceError(GenpipeError):
    """A loss became NaN or Inf: training stopped and the last good checkpoint was kept."""


class Reporter(Protocol):
    def log_epoch(self, epoch: int, metrics: dict[str, float], history: list[dict]) -> None: ...
    def log_images(self, epoch: int) -> None: ...


@dataclass
class FitState:
    epoch: int = 0
    best: float | None = None  # best validation metric so far
    best_epoch: int = 0
    best_weights: dict[str, torch.Tensor] | None = None  # task.exportable() at best_epoch
    history: list[dict[str, float]] = field(default_factory=list)
    run_id: str | None = None


@dataclass(frozen=True)
class Schedule:
    epochs: int
    checkpoint_every: int
    log_images_every: int
    stop_after: int | None = None  # testing hook: return after this epoch, as if killed


def all_generators(task: Task) -> dict[str, torch.Generator]:
    return {"data_order": task.data_order, **task.generators()}


def resume(task: Task, record: dict[str, Any]) -> FitState:
    """Load a checkpoint record (training/checkpoint.py) into `task`; where it left off."""
    task.load_state_dict(record["state"])
    checkpoint.set_rng_state(record["rng"], all_generators(task))
    best = record["best"]
    return FitState(
        record["epoch"],
        best["value"],
        best["epoch"],
        best["weights"],
        list(record["history"]),
        record.get("run_id"),
    )


def save(task: Task, path: Path, key: str, state: FitState) -> None:
    checkpoint.save(
        path,
        {
            "task": task.name,
            "key": key,
            "epoch": state.epoch,
            "state": task.state_dict(),
            "rng": checkpoint.rng_state(all_generators(task)),
            "best": {"value": state.best, "epoch": state.best_epoch, "weights": state.best_weights},
            "history": state.history,
            "run_id": state.run_id,
        },
    )


def _check_finite(epoch: int, losses: dict[str, torch.Tensor], stacked: torch.Tensor) -> None:
    if bool(torch.isfinite(stacked).all()):
        return
    for name, value in losses.items():
        v = float(value)
        if not math.isfinite(v):
            raise DivergenceError(f"epoch {epoch}: {name} is {'nan' if math.isnan(v) else 'inf'}")


def _improves(task: Task, value: float, best: float | None) -> bool:
    if best is None:
        return True
    return value < best if task.val_mode == "min" else value > best


def fit(
    task: Task,
    batches: Batches,
    schedule: Schedule,
    state: FitState,
    reporter: Reporter,
    save_checkpoint: Callable[[FitState], None],
    ranks: Ranks = Ranks(),  # noqa: B008 - immutable: one process
) -> FitState:
    """Run epochs state.epoch+1 .. schedule.epochs; checkpoints via `save_checkpoint`.

    With several processes every rank runs this loop in step: the losses are averaged over the
    ranks each step (so all of them see a NaN at once), every rank validates on the full split,
    and rank 0 alone reports and checkpoints while the others wait for it.
    """
    show = ranks.is_main
    with _progress(task.name, schedule.epochs, len(batches), state.epoch, show) as advance:
        for epoch in range(state.epoch + 1, schedule.epochs + 1):
            started = time.perf_counter()
            sums: torch.Tensor | None = None
            names: list[str] = []
            for batch in batches:
                losses = task.train_step(batch, epoch)
                stacked = ranks.mean(torch.stack([v.float() for v in losses.values()]))
                losses = dict(zip(losses, stacked, strict=True))
                _check_finite(epoch, losses, stacked)
                names = list(losses)
                sums = stacked if sums is None else sums + stacked
                advance()
            assert sums is not None, "no batches in an epoch"
            metrics = dict(zip(names, (sums / len(batches)).tolist(), strict=True))
            val = task.validate()
            for name, value in val.items():
                if not math.isfinite(value):
                    raise DivergenceError(f"epoch {epoch}: {name} is {value}")
            metrics.update(val)
            task.end_epoch(epoch)
            if task.val_metric is not None:
                if _improves(task, metrics[task.val_metric], state.best):
                    state.best, state.best_epoch = metrics[task.val_metric], epoch
                    state.best_weights = {
                        k: v.detach().clone() for k, v in task.exportable().state_dict().items()
                    }
                metrics[f"best_{task.val_metric}"] = state.best
            state.epoch = epoch
            state.history.append({"epoch": epoch, **metrics})
            if show:
                reporter.log_epoch(epoch, metrics, state.history)
                if epoch % schedule.log_images_every == 0 or epoch == schedule.epochs:
                    reporter.log_images(epoch)
            if epoch % schedule.checkpoint_every == 0 or epoch == schedule.epochs:
                if show:
                    save_checkpoint(state)
                ranks.barrier()
            if show:
                log.info(
                    "%s epoch %d/%d %s (%.2fs)",
                    task.name,
                    epoch,
                    schedule.epochs,
                    " ".join(f"{k}={v:.4g}" for k, v in metrics.items()),
                    time.perf_counter() - started,
                )
            if schedule.stop_after is not None and epoch >= schedule.stop_after:
                break
    return state


class _progress:
    """A rich progress bar on a terminal; nothing extra otherwise (the per-epoch log lines stay)."""

    def __init__(self, name: str, epochs: int, steps: int, done_epochs: int, show: bool) -> None:
        self.args = (name, epochs * steps, done_epochs * steps)
        self.show = show
        self.bar: Any = None

    def __enter__(self) -> Callable[[], None]:
        if not (self.show and sys.stderr.isatty()):
            return lambda: None
        from rich.progress import Progress

        name, total, completed = self.args
        self.bar = Progress(transient=True)
        self.bar.start()
        task_id = self.bar.add_task(f"train {name}", total=total, completed=completed)
        return lambda: self.bar.advance(task_id)

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()
