"""Resume checkpoints: everything needed to continue a run bit-exactly on one machine.

`last.pt` lives in the run's work folder (training/workdir.py), outside DVC's outputs, and is a
plain dict of tensors and builtins (loadable with weights_only=True):
    format        "genpipe-train/2"
    task          "vae" | "gan" | "evaluator"
    key           the work folder's key (config + data + code); a mismatch is never resumed
    epoch         last completed epoch
    state         the task's model / EMA / optimiser state_dicts
    rng           torch CPU state, CUDA states, and the named explicit generators
    best          best validation metric so far, its epoch and the exported module's weights then
    history       one dict of metrics per completed epoch (rewritten into the DVC plots file)
    run_id        the MLflow run, continued on resume
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from genpipe import io
from genpipe.errors import GenpipeError

log = logging.getLogger(__name__)

FORMAT = "genpipe-train/2"


class ResumeError(GenpipeError):
    """last.pt cannot be resumed: unreadable, or written for another run."""


def rng_state(generators: dict[str, torch.Generator]) -> dict[str, Any]:
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "generators": {name: g.get_state() for name, g in generators.items()},
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any], generators: dict[str, torch.Generator]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    for name, g in generators.items():
        g.set_state(state["generators"][name])


def save(path: Path, record: dict[str, Any]) -> None:
    """Atomic write: a crash mid-save leaves the previous last.pt intact."""
    io.save_torch(path, {"format": FORMAT, **record})


def load(path: Path, task: str, key: str) -> dict[str, Any]:
    """The checkpoint at `path`, refused unless it belongs to this task and key."""
    try:
        record = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated file, foreign pickle
        raise ResumeError(
            f"{path}: unreadable training checkpoint ({exc}); delete it to train from scratch"
        ) from None
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise ResumeError(
            f"{path}: not a {FORMAT} training checkpoint; delete it to train from scratch"
        )
    if record.get("task") != task or record.get("key") != key:
        raise ResumeError(
            f"{path} belongs to task {record.get('task')!r} key {record.get('key')!r}, not "
            f"{task!r} {key!r}; delete it to train from scratch"
        )
    return record
