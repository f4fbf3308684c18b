"""genpipe.tracking: the first SQLite store is created once, even by processes racing for it."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path

from filelock import FileLock

CHILD = """
from genpipe.tracking import configure_mlflow
import mlflow
configure_mlflow()
with mlflow.start_run(experiment_id="0"):
    mlflow.log_metric("x", 1.0)
"""


def _start(db: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{db}"}
    return subprocess.Popen(
        [sys.executable, "-c", CHILD],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_until_open(child: subprocess.Popen[str], path: Path, deadline_s: float = 120) -> None:
    """Wait until `child` holds `path` open (/proc/<pid>/fd), or fail at the deadline."""
    deadline = time.monotonic() + deadline_s
    fds = Path(f"/proc/{child.pid}/fd")
    while time.monotonic() < deadline:
        assert child.poll() is None, child.communicate()
        with contextlib.suppress(FileNotFoundError):
            if any(os.path.realpath(fd) == str(path) for fd in fds.iterdir()):
                return
        time.sleep(0.05)
    raise AssertionError(f"the child never opened {path}")


def test_a_process_waits_while_another_is_still_migrating_the_store(tmp_path: Path) -> None:
    """The store file exists (another process is half-way through creating it) but is not ready:
    a second process must wait for the creator, not use the half-made store."""
    db = tmp_path / "mlflow.db"
    db.write_bytes(b"")  # what a creator leaves on disk before its migration has run
    with FileLock(f"{db}.lock"):  # the creator holds the lock
        child = _start(db)
        _wait_until_open(child, Path(f"{db}.lock"))  # the child is now trying to take the lock
        assert child.poll() is None, child.communicate()  # ... and waits for it
        assert not (tmp_path / "mlflow.db.ready").exists()
    _, err = child.communicate(timeout=600)
    assert child.returncode == 0, err
    assert (tmp_path / "mlflow.db.ready").exists()


def test_three_processes_create_one_store_at_once(tmp_path: Path) -> None:
    import mlflow

    db = tmp_path / "store" / "mlflow.db"
    children = [_start(db) for _ in range(3)]
    for child in children:
        _, err = child.communicate(timeout=180)
        assert child.returncode == 0, err
    runs = mlflow.MlflowClient(tracking_uri=f"sqlite:///{db}").search_runs(["0"])
    assert len(runs) == 3
