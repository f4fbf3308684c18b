"""The project's store locations and atomic writes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from genpipe import io
from genpipe.settings import get_settings


def test_settings_follow_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GENPIPE_ROOT", str(tmp_path))
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    monkeypatch.delenv("PREFECT_HOME")
    monkeypatch.delenv("GENPIPE_ARTIFACT_ROOT")
    s = get_settings()
    assert s.tracking_uri == f"sqlite:///{tmp_path / 'mlflow' / 'mlflow.db'}"
    assert s.artifact_root == tmp_path / "mlflow" / "artifacts"
    assert s.pipeline_run_id is None
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:1")
    monkeypatch.setenv("GENPIPE_PIPELINE_RUN_ID", "abc")
    monkeypatch.setenv("GENPIPE_HOST", "worker-a")
    s = get_settings()
    assert s.tracking_uri == "http://127.0.0.1:1" and s.pipeline_run_id == "abc"
    assert s.host == "worker-a"


def test_project_root_is_found_from_a_subfolder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    sub = tmp_path / "a" / "b"
    sub.mkdir(parents=True)
    monkeypatch.chdir(sub)
    assert get_settings().root == tmp_path.resolve()


def test_atomic_write_leaves_old_file_when_writer_fails(tmp_path: Path) -> None:
    target = tmp_path / "out" / "out.json"
    io.write_json(target, {"ok": 1})
    with pytest.raises(RuntimeError), io.atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("crash mid-write")
    assert json.loads(target.read_text()) == {"ok": 1}
    assert [p.name for p in target.parent.iterdir()] == ["out.json"]


def test_npz_round_trip(tmp_path: Path) -> None:
    a = np.arange(12, dtype=np.uint8).reshape(3, 4)
    io.write_npz(tmp_path / "x.npz", a=a)
    with np.load(tmp_path / "x.npz") as npz:
        assert np.array_equal(npz["a"], a)
