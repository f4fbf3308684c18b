"""Process supervision on real (tiny) processes: pid files, whole-tree stop, SIGKILL fallback."""

from __future__ import annotations

import os
import pwd
import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest

from genpipe.services import manager, processes
from genpipe.services.processes import Record, Service
from genpipe.services.settings import ServiceError, load_services_config
from tests.conftest import REPO

T = TypeVar("T")


def _until(check: Callable[[], T | None], timeout: float = 60) -> T:
    """Poll `check` until it returns something; fail after `timeout` (a stuck start)."""
    deadline = time.monotonic() + timeout
    while (value := check()) is None:
        assert time.monotonic() < deadline, "the toy processes did not start"
        time.sleep(0.05)
    return value


def _service(tmp_path: Path, script: str) -> Service:
    return Service(
        name="toy",
        argv=["sh", "-c", script],
        env={"PATH": os.environ["PATH"]},
        cwd=tmp_path,
        url="toy://",
        probe=lambda: None,
    )


def test_stop_takes_the_whole_tree_even_a_child_in_its_own_session(tmp_path: Path) -> None:
    # the second sleep escapes the process group with setsid, as sshd's connection children do
    svc = _service(tmp_path, "setsid sleep 300 & sleep 300")
    pidfile = tmp_path / "toy.pid"
    record = processes.start(svc, pidfile, tmp_path / "toy.log", tmp_path)
    assert processes.running(pidfile) == record
    # sh, sleep and the setsid'd sleep, once both have started
    marked = _until(lambda: m if len(m := processes.marked(tmp_path)) == 3 else None)
    assert processes.tree(record.pid) == marked

    assert processes.stop(record, signal.SIGTERM, timeout=30) == set()  # SIGTERM was enough
    assert not any(processes.alive(p) for p in marked)
    assert processes.running(pidfile) is None and not pidfile.exists()


def test_a_process_ignoring_sigterm_gets_sigkill(tmp_path: Path) -> None:
    svc = _service(tmp_path, "trap '' TERM; sleep 300")
    record = processes.start(svc, tmp_path / "toy.pid", tmp_path / "toy.log", tmp_path)
    _until(lambda: len(processes.tree(record.pid)) == 2 or None)
    killed = processes.stop(record, signal.SIGTERM, timeout=1)
    assert record.pid in killed
    assert processes.marked(tmp_path) == set()


def test_a_pid_reused_by_another_process_is_not_ours(tmp_path: Path) -> None:
    pidfile = tmp_path / "toy.pid"
    pidfile.write_text(f'{{"pid": {os.getpid()}, "start_ticks": 1, "argv": ["x"]}}')
    assert processes.read_record(pidfile) == Record(os.getpid(), 1, ["x"])
    assert processes.running(pidfile) is None  # same pid, other start time: stale
    assert not pidfile.exists()


def test_a_taken_port_is_an_error_naming_the_key() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = load_services_config(
            REPO / "params.yaml", {"GENPIPE_SERVICES_MLFLOW_PORT": str(port)}
        )
        assert processes.port_in_use("127.0.0.1", port)
        with pytest.raises(ServiceError, match="GENPIPE_SERVICES_MLFLOW_PORT") as err:
            manager._check_port(config, "mlflow")
        assert f"127.0.0.1:{port}" in str(err.value) and "services.mlflow.port" in str(err.value)
    assert not processes.port_in_use("127.0.0.1", port)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to judge another account's access")
def test_a_data_dir_postgres_cannot_reach_is_named(tmp_path: Path) -> None:
    from genpipe.services.postgres import _check_reachable

    try:
        pwd.getpwnam("postgres")
    except KeyError:
        pytest.skip("no postgres account")
    closed = tmp_path / "closed"
    closed.mkdir(mode=0o700)
    with pytest.raises(ServiceError, match=f"cannot enter {closed}"):
        _check_reachable(closed / "postgres", "postgres")
