"""What a model family plugs into the training loop: the `Task` protocol and the task registry.

A task owns its model(s), optimiser(s) and the data it validates on; the loop (training/loop.py)
owns the order of events in an epoch, so resume, divergence checks, best-epoch tracking and
reporting are written once for every family. Each family is one module in
`genpipe.training.tasks` whose `TASK` is its class; its name is its params.yaml section, and its
DVC stage is `train_<name>`.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal, Protocol

import torch
from torch import nn

from genpipe.config import Params
from genpipe.data.dataset import PreparedData
from genpipe.device import Runtime
from genpipe.errors import GenpipeError
from genpipe.training.data import Batch
from genpipe.training.distributed import Ranks


@dataclass(frozen=True)
class TaskContext:
    """What a task needs besides params and data: where it computes, its work folder, and its
    place among data-parallel processes."""

    runtime: Runtime
    work: Path  # the run's resume folder (snapshots that outlive a crash go here)
    ranks: Ranks = field(default_factory=Ranks)


@dataclass(frozen=True)
class Exported:
    """What `Task.export` wrote: files to log as run artifacts, final metrics, the chosen epoch."""

    files: list[Path]
    metrics: dict[str, float] = field(default_factory=dict)


class Task(Protocol):
    name: ClassVar[str]  # registry key, params.yaml section, stage train_<name>
    val_metric: ClassVar[str | None]  # key of validate()'s result that picks the best epoch
    val_mode: ClassVar[Literal["min", "max"]]

    epochs: int
    batch_size: int
    drop_last: bool  # drop a last partial batch (steady batch statistics for the generators)
    channels_last: bool  # feed batches in channels_last layout (the models were moved to it)
    data_order: torch.Generator  # CPU generator drawing each epoch's order (resume state)

    def generators(self) -> dict[str, torch.Generator]: ...  # other explicit RNGs to checkpoint
    def state_dict(self) -> dict[str, Any]: ...
    def load_state_dict(self, state: dict[str, Any]) -> None: ...
    def train_step(self, batch: Batch, epoch: int) -> dict[str, torch.Tensor]:
        """One optimiser step on this rank's rows of a global batch; returns its losses."""
        ...

    def validate(self) -> dict[str, float]: ...
    def end_epoch(self, epoch: int) -> None: ...
    def grids(self) -> dict[str, torch.Tensor]: ...  # name -> images [N, C, H, W] in [0, 1]
    def exportable(self) -> nn.Module: ...  # the module whose best-epoch weights are exported
    def export(self, out: Path, weights: dict[str, torch.Tensor] | None, epoch: int) -> Exported:
        """Write the model files to `out`; `weights` are the best epoch's (None: the last)."""
        ...


class TaskBuilder(Protocol):
    name: ClassVar[str]

    @classmethod
    def run_config(cls, params: Params) -> dict[str, Any]:
        """The params sections that shape the run: logged as params, part of the resume key."""
        ...

    @classmethod
    def build(cls, params: Params, data: PreparedData, context: TaskContext) -> Task: ...


class UnknownTaskError(GenpipeError):
    """No training task has the requested name."""


def available_tasks() -> list[str]:
    """The task names: one module per family in genpipe.training.tasks."""
    import genpipe.training.tasks as package

    return sorted(m.name for m in pkgutil.iter_modules(package.__path__))


def get_task(name: str) -> TaskBuilder:
    """The task class of one family, importing only that family's module (its stage's deps)."""
    if name not in available_tasks():
        raise UnknownTaskError(
            f"unknown training task {name!r}; choose one of {', '.join(available_tasks())}"
        )
    return importlib.import_module(f"genpipe.training.tasks.{name}").TASK
