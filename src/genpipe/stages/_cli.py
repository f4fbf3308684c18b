"""What every stage CLI shares: logging set-up, params loading, clean error exits, and OpenMP's
wait policy (set before torch is imported, so stage modules import torch only inside functions)."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable, Mapping, MutableMapping
from pathlib import Path
from typing import Any

from genpipe.errors import GenpipeError

log = logging.getLogger("genpipe")

WAIT_ENV = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")  # libgomp's; either one set by the user wins


def parser(description: str, params: bool = True) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    if params:
        p.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    return p


def passive_wait(
    environ: MutableMapping[str, str] = os.environ, modules: Mapping[str, object] = sys.modules
) -> None:
    """OMP_WAIT_POLICY=PASSIVE unless the user chose a wait policy or spin count.

    libgomp (torch's OpenMP) otherwise spins for ~300,000 iterations before a waiting thread
    sleeps, which outlasts most operations on small images: beside other busy processes the
    waiting threads burn the cores the working ones need. It reads the variable once, when torch
    is imported, so `run` calls this before any stage imports torch and does nothing after it
    (a stage called in-process, by a test).
    """
    if "torch" not in modules and not any(name in environ for name in WAIT_ENV):
        environ["OMP_WAIT_POLICY"] = "PASSIVE"


def run(stage: str, work: Callable[[], object]) -> int:
    """Run the stage; a user-facing error becomes its message and exit code 2."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    passive_wait()
    try:
        work()
    except GenpipeError as exc:
        print(f"genpipe {stage}: error: {exc}", file=sys.stderr)
        return 2
    return 0


def read_json(path: Path, what: str, stage: str) -> Any:
    """A JSON input written by an upstream stage; errors say which stage rewrites it."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise GenpipeError(f"{path}: {what} not found; `dvc repro {stage}` writes it") from None
    except json.JSONDecodeError as exc:
        raise GenpipeError(
            f"{path}: not valid JSON ({exc}); `dvc repro -f {stage}` rewrites it"
        ) from None
