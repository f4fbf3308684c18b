"""genpipe.tracking: the first SQLite store is created once, even by processes racing for it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
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


def test_a_process_waits_while_another_is_still_migrating_the_store(
    tmp_path: Path, migrated_mlflow_db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The store file exists (another process is half-way through creating it) but is not ready:
    a second opener must wait for the creator's lock, then use the store the creator finished
    (never migrate or read the half-made one). The creator is this test, holding the lock."""
    import filelock

    from genpipe import tracking

    db = tmp_path / "mlflow.db"
    db.write_bytes(b"")  # what a creator leaves on disk before its migration has run
    waiting = threading.Event()

    class Observed(filelock.FileLock):  # tells the test the opener has reached the lock
        def acquire(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            waiting.set()
            return super().acquire(*args, **kwargs)

    monkeypatch.setattr(filelock, "FileLock", Observed)
    failed: list[BaseException] = []

    def open_store() -> None:
        try:
            tracking._create_sqlite_store(f"sqlite:///{db}")
        except BaseException as exc:  # reported by the test thread
            failed.append(exc)

    with FileLock(f"{db}.lock"):  # the creator holds the lock
        opener = threading.Thread(target=open_store)
        opener.start()
        assert waiting.wait(timeout=120), "the opener never reached the lock"
        assert opener.is_alive() and db.read_bytes() == b""  # it waits, the store untouched
        shutil.copyfile(migrated_mlflow_db, db)  # the creator's migration ends ...
        (tmp_path / "mlflow.db.ready").touch()  # ... and it says so, then lets go of the lock
    opener.join(timeout=600)
    assert not opener.is_alive() and failed == []
    assert db.read_bytes() == migrated_mlflow_db.read_bytes()  # used as the creator left it


def test_three_processes_create_one_store_at_once(tmp_path: Path) -> None:
    import mlflow

    db = tmp_path / "store" / "mlflow.db"
    children = [_start(db) for _ in range(3)]
    for child in children:
        _, err = child.communicate(timeout=180)
        assert child.returncode == 0, err
    runs = mlflow.MlflowClient(tracking_uri=f"sqlite:///{db}").search_runs(["0"])
    assert len(runs) == 3


def test_a_step_whose_answer_was_cut_off_is_sent_once_more_the_same(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A tracking server that dies while answering: the first log-batch gets half a response
    (what a SIGKILLed `mlflow server` leaves), the second a whole one; MLflow's client retries
    neither by itself, log_step sends the same batch (same timestamp) again."""
    import json
    import socket

    import mlflow

    from genpipe import tracking

    server = socket.create_server(("127.0.0.1", 0))
    bodies: list[dict] = []

    def serve() -> None:
        for answer in (b'5\r\n{"a"', b"2\r\n{}\r\n0\r\n\r\n"):
            conn, _ = server.accept()
            data = conn.recv(65536)
            while b"\r\n\r\n" not in data:
                data += conn.recv(65536)
            head, body = data.split(b"\r\n\r\n", 1)
            length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length")))  # fmt: skip
            while len(body) < length:
                body += conn.recv(65536)
            bodies.append(json.loads(body))
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                         b"Transfer-Encoding: chunked\r\n\r\n" + answer)  # fmt: skip
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    mlflow.set_tracking_uri(f"http://127.0.0.1:{server.getsockname()[1]}")
    tracking.log_step({"beat": 3.0}, 7, run_id="r1")
    thread.join(timeout=30)
    server.close()
    assert len(bodies) == 2 and bodies[0] == bodies[1], bodies
    [metric] = bodies[0]["metrics"]
    assert (metric["key"], metric["value"], metric["step"]) == ("beat", 3.0, 7)
