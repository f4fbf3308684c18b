"""What every stage CLI shares: logging set-up, params loading, and clean error exits."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from genpipe.errors import GenpipeError

log = logging.getLogger("genpipe")


def parser(description: str, params: bool = True) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    if params:
        p.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    return p


def run(stage: str, work: Callable[[], object]) -> int:
    """Run the stage; a user-facing error becomes its message and exit code 2."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
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
