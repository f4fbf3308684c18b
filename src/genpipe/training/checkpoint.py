"""Training checkpoints: everything needed to resume a run bit-exactly on CPU.

`last.pt` is a plain dict of tensors and builtins (loadable with weights_only=True):
    format      "genpipe-train/1"
    model       "vae" | "gan"
    epoch       last completed epoch
    config      {"train": {...}, "<model>": {...}} the sections that shaped the run
    state       model / EMA / optimiser state_dicts (model-specific keys)
    rng         torch CPU state, CUDA states, and the named explicit generators
    best        best validation metric so far (None before the first validation)
    history     one dict of metrics per completed epoch (rewritten into the DVC plots file)
    run_id      the MLflow run, reopened on resume
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from genpipe import io
from genpipe.errors import GenpipeError
from genpipe.tracking import flatten

log = logging.getLogger(__name__)

FORMAT = "genpipe-train/1"
# Bookkeeping keys that may change between a crashed run and its resumption.
RESUME_FREE_KEYS = frozenset(
    {"train.resume", "train.checkpoint_every", "train.log_images_every", "train.num_workers"}
)


class ResumeError(GenpipeError):
    """last.pt cannot be resumed: unreadable, or written with a different config."""


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


def load(path: Path) -> dict[str, Any]:
    try:
        record = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated file, foreign pickle
        raise ResumeError(
            f"{path}: unreadable training checkpoint ({exc}); delete it or set train.resume: false"
        ) from None
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise ResumeError(
            f"{path}: not a genpipe training checkpoint; delete it or set train.resume: false"
        )
    return record


def check_config(path: Path, saved: dict[str, Any], current: dict[str, Any]) -> None:
    """Refuse to resume under a different config: the result would match neither run."""
    old, new = flatten(saved), flatten(current)
    for key in sorted(set(old) | set(new)):
        if key in RESUME_FREE_KEYS:
            continue
        if _norm(old.get(key)) != _norm(new.get(key)):
            raise ResumeError(
                f"{path} was written with {key}={old.get(key)!r} but params.yaml now has "
                f"{key}={new.get(key)!r}; restore the old value, or set train.resume: false "
                "to train from scratch"
            )


def _norm(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value
