"""A benchmark's result as a committed record, which `make docs` renders into docs/benchmarks.md.

A benchmark adds the flag and, once it has its figures, writes them:

    from benchmarks import records

    records.add_argument(parser)        # --record [FILE]: default docs/records/benchmarks/<name>.json
    ...
    records.write(args.record, [
        {"compares": "three trainings at once: core split vs every process on all cores",
         "result": "18.5 s vs 35.1 s: 1.90x faster", "ratio": 1.90},
    ], tables={"per run": [{"run": 1, "split s": 18.5, "all cores s": 35.1}]})

Each row is one line of the page's table: `compares` and `result` (text) are required; `ratio`
(a number), `goal` (text) and `met` (bool) are optional. `tables` are optional detail tables (a
title -> rows of column -> value). The record adds what makes a figure comparable: the command
as typed, the machine (CPU, usable cores, memory, torch), the load averages when the run ended
(1, 5 and 15 min: the 5- and 15-minute ones cover the run) and the commit. Without --record,
`write` does nothing.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

FOLDER = Path("docs/records/benchmarks")
ROW_KEYS = {"compares", "result", "ratio", "goal", "met", "load", "date", "command"}


def add_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--record",
        nargs="?",
        const=FOLDER / f"{_name()}.json",
        default=None,
        type=Path,
        metavar="FILE",
        help=f"also write the result as a record for docs/benchmarks.md (default {FOLDER}/<name>.json)",
    )


def write(
    path: Path | None, rows: list[dict[str, Any]], tables: dict[str, list[dict]] | None = None
) -> Path | None:
    """Write the record to `path` (None: no record asked for); returns the path written."""
    if path is None:
        return None
    for row in rows:
        unknown = set(row) - ROW_KEYS
        if unknown or not {"compares", "result"} <= set(row):
            raise ValueError(f"a record row needs compares and result, knows {sorted(ROW_KEYS)}")
    record = {
        "benchmark": Path(path).stem,
        "command": command(),
        "rows": rows,
        "tables": tables or {},
        "machine": machine(),
        "load": dict(zip(("1m", "5m", "15m"), (round(x, 2) for x in os.getloadavg()), strict=True)),
        "date": datetime.date.today().isoformat(),
        "commit": _commit(),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"record: {path}")
    return path


def command() -> str:
    """The command as typed, without --record: `python -m benchmarks.<name> ...`."""
    args, skip = [], False
    for arg in sys.argv[1:]:
        if skip:
            skip = False
            if not arg.startswith("-"):
                continue
        if arg == "--record":
            skip = True
            continue
        if arg.startswith("--record="):
            continue
        args.append(arg)
    return shlex.join(["python", "-m", f"benchmarks.{_name()}", *args])


def machine() -> dict[str, Any]:
    cpu = platform.machine()
    try:
        models = [
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ]
        cpu = models[0] if models else cpu
        memory_kb = next(
            int(line.split()[1])
            for line in Path("/proc/meminfo").read_text().splitlines()
            if line.startswith("MemTotal:")
        )
    except (OSError, StopIteration, ValueError):
        memory_kb = 0
    out: dict[str, Any] = {
        "cpu": cpu,
        "cores": len(os.sched_getaffinity(0)),
        "memory_gb": round(memory_kb / 2**20),
        "python": platform.python_version(),
    }
    try:
        import torch

        out["torch"] = torch.__version__
        out["gpu"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except ImportError:
        pass
    return out


def _name() -> str:
    return Path(sys.argv[0]).stem


def _commit() -> str | None:
    done = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    )
    return done.stdout.strip() or None
