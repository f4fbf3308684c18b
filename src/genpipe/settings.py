"""Where the project's local stores live: the one place for MLflow and Prefect locations.

Read at run time, never at import time. Environment variables win, so CI, tests and Prefect
workers can point a run elsewhere; the defaults keep everything inside the project folder.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Settings:
    root: Path
    tracking_uri: str
    artifact_root: Path
    prefect_home: Path
    pipeline_run_id: str | None


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
        prefect_home=Path(os.environ.get("PREFECT_HOME") or root / ".prefect"),
        pipeline_run_id=os.environ.get("GENPIPE_PIPELINE_RUN_ID") or None,
    )
