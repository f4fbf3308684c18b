"""The model-agnostic epoch loop: steps, NaN/Inf guard, validation, reporting, checkpoints.

A model plugs in as a `Task` (see training/vae.py and training/gan.py); the loop owns the
order of events in an epoch, so resume and divergence handling are written once.
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

log = logging.getLogger(__name__)


class DivergenceError(GenpipeError):
    """A loss became NaN or Inf: training stopped and the last good checkpoint was kept."""


class Task(Protocol):
    name: str
    val_metric: str | None  # lower is better; None: no "best" tracking

    def generators(self) -> dict[str, torch.Generator]: ...  # explicit RNGs to checkpoint
    def state_dict(self) -> dict[str, Any]: ...
    def load_state_dict(self, state: dict[str, Any]) -> None: ...
    def train_step(self, x: torch.Tensor, epoch: int) -> dict[str, torch.Tensor]: ...
    def validate(self, x: torch.Tensor) -> dict[str, float]: ...
    def end_epoch(self, epoch: int) -> None: ...


class Reporter(Protocol):
    def log_epoch(self, epoch: int, metrics: dict[str, float], history: list[dict]) -> None: ...
    def log_images(self, epoch: int) -> None: ...


@dataclass
class FitState:
    epoch: int = 0
    best: float | None = None
    history: list[dict[str, float]] = field(default_factory=list)
    run_id: str | None = None


@dataclass(frozen=True)
class Schedule:
    epochs: int
    checkpoint_every: int
    log_images_every: int
    stop_after: int | None = None  # testing hook: return after this epoch, as if killed


def restore(
    task: Task, path: Path, config: dict[str, Any], generators: dict[str, torch.Generator]
) -> FitState:
    """Load last.pt into `task` (after checking its config) and return where it left off."""
    record = checkpoint.load(path)
    if record.get("model") != task.name:
        raise checkpoint.ResumeError(
            f"{path} holds a {record.get('model')!r} run, not {task.name!r}"
        )
    checkpoint.check_config(path, record["config"], config)
    task.load_state_dict(record["state"])
    checkpoint.set_rng_state(record["rng"], {**task.generators(), **generators})
    log.info("resuming %s from %s at epoch %d", task.name, path, record["epoch"])
    return FitState(record["epoch"], record["best"], list(record["history"]), record.get("run_id"))


def save(
    task: Task,
    path: Path,
    config: dict[str, Any],
    state: FitState,
    generators: dict[str, torch.Generator],
) -> None:
    checkpoint.save(
        path,
        {
            "model": task.name,
            "epoch": state.epoch,
            "config": config,
            "state": task.state_dict(),
            "rng": checkpoint.rng_state({**task.generators(), **generators}),
            "best": state.best,
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


def fit(
    task: Task,
    batches: Batches,
    val_x: torch.Tensor,
    schedule: Schedule,
    state: FitState,
    reporter: Reporter,
    save_checkpoint: Callable[[FitState], None],
) -> FitState:
    """Run epochs state.epoch+1 .. schedule.epochs; checkpoints via `save_checkpoint`."""
    with _progress(task.name, schedule.epochs, len(batches), state.epoch) as advance:
        for epoch in range(state.epoch + 1, schedule.epochs + 1):
            started = time.perf_counter()
            sums: torch.Tensor | None = None
            names: list[str] = []
            for x in batches:
                losses = task.train_step(x, epoch)
                stacked = torch.stack([v.float() for v in losses.values()])
                _check_finite(epoch, losses, stacked)
                names = list(losses)
                sums = stacked if sums is None else sums + stacked
                advance()
            assert sums is not None, "no batches in an epoch"
            metrics = dict(zip(names, (sums / len(batches)).tolist(), strict=True))
            val = task.validate(val_x)
            for name, value in val.items():
                if not math.isfinite(value):
                    raise DivergenceError(f"epoch {epoch}: {name} is {value}")
            metrics.update(val)
            task.end_epoch(epoch)
            if task.val_metric is not None:
                current = metrics[task.val_metric]
                state.best = current if state.best is None else min(state.best, current)
                metrics[f"best_{task.val_metric}"] = state.best
            state.epoch = epoch
            state.history.append({"epoch": epoch, **metrics})
            reporter.log_epoch(epoch, metrics, state.history)
            if epoch % schedule.log_images_every == 0 or epoch == schedule.epochs:
                reporter.log_images(epoch)
            if epoch % schedule.checkpoint_every == 0 or epoch == schedule.epochs:
                save_checkpoint(state)
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

    def __init__(self, name: str, epochs: int, steps: int, done_epochs: int) -> None:
        self.args = (name, epochs * steps, done_epochs * steps)
        self.bar: Any = None

    def __enter__(self) -> Callable[[], None]:
        if not sys.stderr.isatty():
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
