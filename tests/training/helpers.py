"""Building a task directly, outside the train() entry point, for step-level tests."""

from __future__ import annotations

from pathlib import Path

from genpipe import device
from genpipe.config import Params
from genpipe.data.dataset import load_prepared
from genpipe.training.data import Batch, Batches
from genpipe.training.distributed import Ranks
from genpipe.training.task import Task, TaskContext, get_task

CPU = device.Available(cuda=False, mps=False, bf16=False)


def build_task(name: str, params: Params, prepared: Path, work: Path) -> Task:
    runtime = device.resolve(params.runtime, CPU)
    return get_task(name).build(params, load_prepared(prepared), TaskContext(runtime, work))


def batches_for(task: Task, params: Params, prepared: Path) -> Batches:
    data = load_prepared(prepared)
    return Batches(
        data.train.images,
        data.train.labels,
        task.batch_size,
        device.resolve(params.runtime, CPU),
        task.data_order,
        10**9,
        0,
        task.drop_last,
        task.channels_last,
        Ranks(),
    )


def whole(x, y) -> Batch:
    """A batch that is all of one process's global batch."""
    return Batch(x, y, len(x), slice(None))
