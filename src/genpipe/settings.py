"""Where the project's local stores live, and who is running: read from the environment.

Read at run time, never at import time. Environment variables win, so CI, tests and Prefect
workers can point a run elsewhere; the defaults keep everything inside the project folder.
"""

from __future__ import annotations

import functools
import os
import socket
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Settings:
    root: Path
    tracking_uri: str
    artifact_root: Path
    pipeline_run_id: str | None
    parent_run_id: str | None  # GENPIPE_PARENT_RUN_ID: a sweep member's MLflow run, to nest under
    host: str  # GENPIPE_HOST, else the host name: tags where a run ran


def project_root() -> Path:
    """GENPIPE_ROOT, else the nearest folder above the cwd holding dvc.yaml, else the cwd."""
    env = os.environ.get("GENPIPE_ROOT")
    if env:
        return Path(env).resolve()
    cwd = Path.cwd().resolve()
    for folder in (cwd, *cwd.parents):
        if (folder / "dvc.yaml").exists():
            return folder
    return cwd


def get_settings() -> Settings:
    root = project_root()
    store = root / "mlflow"
    return Settings(
        root=root,
        tracking_uri=os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{store / 'mlflow.db'}",
        artifact_root=Path(os.environ.get("GENPIPE_ARTIFACT_ROOT") or store / "artifacts"),
        pipeline_run_id=pipeline_run_id(),
        parent_run_id=os.environ.get("GENPIPE_PARENT_RUN_ID") or None,
        host=os.environ.get("GENPIPE_HOST") or socket.gethostname(),
    )


def pipeline_run_id() -> str | None:
    """The id shared by every stage run of one pipeline run, for the MLflow tag.

    GENPIPE_PIPELINE_RUN_ID wins (the Prefect flow passes its flow-run id, because it starts one
    `dvc repro` per stage). Otherwise, under a plain `dvc repro` or `dvc exp run`, the stages are
    children of one `dvc` process, so its host, pid and start time name the run. None when no
    `dvc` process is an ancestor (a stage CLI run by hand, a test).
    """
    return os.environ.get("GENPIPE_PIPELINE_RUN_ID") or _dvc_ancestor_run_id()


@functools.cache
def _dvc_ancestor_run_id() -> str | None:
    """A stable uuid for the nearest `dvc` ancestor process (the process tree does not change)."""
    import psutil

    for process in psutil.Process().parents():
        try:
            if is_dvc_command(process.cmdline()):
                key = f"{socket.gethostname()}:{process.pid}:{process.create_time():.3f}"
                return str(uuid.uuid5(uuid.NAMESPACE_URL, f"genpipe-dvc-run:{key}"))
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return None


def is_dvc_command(argv: Sequence[str]) -> bool:
    """`dvc ...`, `python .../bin/dvc ...` or `python -m dvc ...` (not `dvc-data`, not a stage)."""
    head = [Path(a).name for a in argv[:2]]
    if "dvc" in head:
        return True
    return len(argv) >= 3 and argv[1] == "-m" and argv[2] == "dvc"
