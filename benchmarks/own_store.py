"""Point MLflow at a benchmark's own store, so its training runs never touch the project's."""

from __future__ import annotations

import os
from pathlib import Path


def use_own_store(out: Path) -> None:
    """Runs go to <out>/mlflow.db and their artifacts to <out>/artifacts (out is created)."""
    out.mkdir(parents=True, exist_ok=True)
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{(out / 'mlflow.db').resolve()}"
    os.environ["GENPIPE_ARTIFACT_ROOT"] = str((out / "artifacts").resolve())
