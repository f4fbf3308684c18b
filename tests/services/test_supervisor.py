"""The supervisord side without the real services: the config it gets, the reaper on a real
process group, a port held by a stranger, a data dir postgres cannot reach."""

from __future__ import annotations

import configparser
import io
import os
import pwd
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from genpipe.services import manager, reaper, supervisor
from genpipe.services.credentials import Credentials
from genpipe.services.settings import Layout, ServiceError, load_services_config
from tests.conftest import REPO

CREDS = Credentials("pg-secret-1234", "admin-secret", "client-secret", "prefect-secret", "flask")


def test_every_service_is_one_supervised_process_group(tmp_path: Path) -> None:
    config = load_services_config(REPO / "params.yaml", {})
    layout = Layout(tmp_path / "state")
    programs = [
        supervisor.Program(
            "postgres", ["/bin/postgres", "-D", "x"], {}, tmp_path, stop_signal="INT"
        ),
        *[
            supervisor.Program(name, ["/bin/true", "100%"], {"SECRET": "a%b"}, tmp_path)
            for name in ("mlflow", "prefect", "sshd")
        ],
    ]
    parser = configparser.RawConfigParser()
    parser.read_string(supervisor.render(config, layout, programs))
    for name in ("postgres", "mlflow", "prefect", "sshd"):
        section = parser[f"program:{name}"]
        assert section["stopasgroup"] == section["killasgroup"] == "true"
        assert section["autorestart"] == "true" and section["autostart"] == "false"
        assert section["startretries"] == str(config.supervisor.start_retries)
    assert parser["program:postgres"]["stopsignal"] == "INT"  # postgres' fast shutdown
    assert parser["program:mlflow"]["environment"] == 'SECRET="a%%b"'  # % is supervisord's
    assert "PROCESS_STATE_EXITED" in parser["eventlistener:reaper"]["events"]


def test_the_reaper_kills_what_a_dead_leader_left_in_its_group() -> None:
    # a leader in its own group with a child, as supervisord starts `mlflow server` and uvicorn
    leader = subprocess.Popen(
        ["sh", "-c", "sleep 300 & wait"], start_new_session=True, stdout=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 60
    while not (children := psutil.Process(leader.pid).children()):
        assert time.monotonic() < deadline, "the child never started"
        time.sleep(0.05)
    os.kill(leader.pid, signal.SIGKILL)  # kill -9 of the leader alone: its child lives on
    leader.wait()
    assert children[0].is_running() and children[0].status() != psutil.STATUS_ZOMBIE

    payload = f"processname:mlflow groupname:mlflow from_state:RUNNING expected:0 pid:{leader.pid}"
    header = f"ver:3.0 server:s serial:1 pool:reaper poolserial:1 eventname:PROCESS_STATE_EXITED len:{len(payload)}\n"
    stdin, stdout, stderr = io.StringIO(header + payload), io.StringIO(), io.StringIO()
    saved = sys.stdin, sys.stdout, sys.stderr
    sys.stdin, sys.stdout, sys.stderr = stdin, stdout, stderr
    try:
        assert reaper.main() == 0  # one event, then EOF: supervisord is gone
    finally:
        sys.stdin, sys.stdout, sys.stderr = saved
    assert stdout.getvalue() == "READY\nRESULT 2\nOKREADY\n"
    gone, _ = psutil.wait_procs(children, timeout=30)
    assert gone, "the orphaned child survived the reaper"


def test_a_port_held_by_a_stranger_is_named_with_its_pid_and_key(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = load_services_config(
            REPO / "params.yaml", {"GENPIPE_SERVICES_MLFLOW_PORT": str(port)}
        )
        assert supervisor.listeners("127.0.0.1", port) == [os.getpid()]
        layout = Layout(tmp_path / "state")
        with pytest.raises(ServiceError, match="GENPIPE_SERVICES_MLFLOW_PORT") as err:
            manager._free_port(config, layout, "mlflow", supervisor.Supervisor(layout))
        assert f"127.0.0.1:{port} is held by pid {os.getpid()}" in str(err.value)
        assert "services.mlflow.port" in str(err.value)


def test_client_environment_hands_out_the_client_account_not_the_admin(tmp_path: Path) -> None:
    from genpipe.services import credentials

    config = load_services_config(REPO / "params.yaml", {})
    layout = Layout(tmp_path / "state")
    layout.prepare()
    creds = credentials.ensure(config, layout)
    env = manager.client_environment(config, layout)
    assert env["MLFLOW_TRACKING_USERNAME"] == config.mlflow.user
    assert env["MLFLOW_TRACKING_PASSWORD"] == creds.mlflow_client
    assert creds.mlflow_admin not in env.values()
    assert env["PREFECT_API_AUTH_STRING"] == f"{config.prefect.user}:{creds.prefect}"
    assert env["GENPIPE_SERVICES_STATE_DIR"] == str(layout.root)
    assert credentials.ensure(config, layout) == creds  # generated once


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
