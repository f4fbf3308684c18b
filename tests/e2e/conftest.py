"""End-to-end fixtures: a project copy with tiny params and its own MLflow store."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.tiny import shrink_params


@pytest.fixture
def project(project_copy: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The project copy with tiny params, its own MLflow store (the default: mlflow/mlflow.db)
    and no dvc.lock (nothing is in its cache)."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    monkeypatch.delenv("GENPIPE_ARTIFACT_ROOT")
    shrink_params(project_copy, {"evaluate": {"draws": 2}})
    (project_copy / "dvc.lock").unlink(missing_ok=True)
    return project_copy
