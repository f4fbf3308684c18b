"""genpipe.tracking.clean_orphans: what dead processes left RUNNING is marked FAILED, a resume
folder goes once the stage's output holds its result; nothing of a live process or another host
is touched."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest

from genpipe import tracking
from genpipe.settings import get_settings


def _dead_owner(host: str | None = None) -> str:
    """The owner tag of a process that ran here and has exited."""
    done = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    return f"{host or get_settings().host}:{int(done.stdout)}:12.00"


def _running_run(owner: str) -> str:
    with tracking.live_run("train_vae", "digits") as run:
        run_id = run.info.run_id
    client = mlflow.MlflowClient()
    client.update_run(run_id, status="RUNNING")  # as a killed process leaves it
    client.set_tag(run_id, tracking.OWNER_TAG, owner)
    return run_id


def _folder(root: Path, stage: str, key: str, run_id: str, owner: str, out: str) -> Path:
    folder = root / ".genpipe" / "work" / stage / key[:16]
    folder.mkdir(parents=True)
    (folder / "run.json").write_text(json.dumps({"run_id": run_id, "owner": owner, "out": out}))
    return folder


def _exported(root: Path, out: str, key: str) -> None:
    (root / out).mkdir(parents=True)
    (root / out / "run.json").write_text(json.dumps({"run_id": "x", "work_key": key}))


def test_only_what_dead_processes_of_this_host_left_is_cleaned(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GENPIPE_ROOT", str(tmp_path))
    restored, pending, live = "a" * 64, "b" * 64, "c" * 64
    dead = _dead_owner()
    # a crashed training whose stage was then restored from the run-cache (same key)
    run_restored = _running_run(dead)
    folder_restored = _folder(
        tmp_path, "train_vae", restored, run_restored, dead, "data/models/vae"
    )
    _exported(tmp_path, "data/models/vae", restored)
    # a crashed training under params that are not current: its checkpoint stays for a resume
    run_pending = _running_run(dead)
    folder_pending = _folder(tmp_path, "train_gan", pending, run_pending, dead, "data/models/gan")
    _exported(tmp_path, "data/models/gan", "d" * 64)
    # a training that is running now, in this process
    run_live = _running_run(tracking.owner())
    folder_live = _folder(
        tmp_path, "train_evaluator", live, run_live, tracking.owner(), "data/models/evaluator"
    )
    _exported(tmp_path, "data/models/evaluator", live)
    run_no_folder = _running_run(dead)  # a killed stage's run, no resume folder
    run_other_host = _running_run(_dead_owner("another-host"))

    done = tracking.clean_orphans(tmp_path / ".genpipe" / "work")

    client = mlflow.MlflowClient()
    status = {r: client.get_run(r).info.status for r in (run_restored, run_pending, run_live)}
    assert status == {run_restored: "FAILED", run_pending: "FAILED", run_live: "RUNNING"}
    assert client.get_run(run_no_folder).info.status == "FAILED"
    assert client.get_run(run_other_host).info.status == "RUNNING"
    assert not folder_restored.exists()
    assert folder_pending.exists() and folder_live.exists()
    assert len(done) == 4, done
    assert tracking.clean_orphans(tmp_path / ".genpipe" / "work") == []  # nothing left to do


def test_the_owner_tag_names_this_process() -> None:
    assert not tracking.owner_gone(tracking.owner())
    assert tracking.owner_gone(_dead_owner())
    assert not tracking.owner_gone(_dead_owner("another-host"))
    assert not tracking.owner_gone(None) and not tracking.owner_gone("garbage")
