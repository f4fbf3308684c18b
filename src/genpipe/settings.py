"""Where the project's local stores live, and who is running: read from the environment.

Read at run time, never at import time. Environment variables win, so CI, tests and Prefect
workers can point a run elsewhere; the defaults keep everything inside the project folder.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Settings:
    root: Path
    tracking_uri: str
    artifact_root: Path
    pipeline_run_id: str | None
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
        pipeline_run_id=os.environ.get("GENPIPE_PIPELINE_RUN_ID") or None,
        host=os.environ.get("GENPIPE_HOST") or socket.gethostname(),
    )
