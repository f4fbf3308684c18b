"""What every stage CLI shares: logging set-up, params loading, and clean error exits."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable

from genpipe.config import Params, load_params
from genpipe.errors import GenpipeError

log = logging.getLogger("genpipe")


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    return p


def run(stage: str, work: Callable[[Params], object], params_path: str) -> int:
    """Load params once, run the stage, and turn user-facing errors into exit code 2."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        work(load_params(params_path))
    except GenpipeError as exc:
        print(f"genpipe {stage}: error: {exc}", file=sys.stderr)
        return 2
    return 0
