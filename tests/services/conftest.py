"""The real team services on 127.0.0.1, free ports, a temporary state folder; always stopped."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from genpipe.config import ServicesConfig
from tests.conftest import REPO

HERE = Path(__file__).resolve().parent
CLIENT = HERE / "mlflow_client.py"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class TeamServices:
    state: Path
    env: dict[str, str]  # for `python -m genpipe.services` (the overrides, GENPIPE_ROOT)
    ports: dict[str, int]

    def cli(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "genpipe.services", *args],
            env=self.env,
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def client_env(self, **extra: str) -> dict[str, str]:
        """os.environ plus what `services env` exports (minus the test's SQLite store)."""
        done = self.cli("env")
        assert done.returncode == 0, done.stderr
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "PREFECT_"))}
        for line in done.stdout.splitlines():
            key, _, value = line.removeprefix("export ").partition("=")
            env[key] = value.strip("'")
        return {**env, **extra}

    def config(self) -> ServicesConfig:
        from genpipe.services.settings import load_services_config

        return load_services_config(REPO / "params.yaml", self.env)

    def client(self, *args: str, env: dict[str, str], cwd: Path) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, str(CLIENT), *args],
            env=env,
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )


@pytest.fixture(scope="module")
def team() -> Iterator[TeamServices]:
    """PostgreSQL, MLflow, Prefect and sshd from `python -m genpipe.services up`, as a user runs
    them; `down` afterwards, then a sweep of anything still marked with the state folder."""
    from genpipe.services import processes, system

    system.install_missing()  # a fresh CI machine has no openssh-server; we run as root there
    # a short path under /tmp: the postgres account must traverse it, and the socket path is short
    state = Path(tempfile.mkdtemp(prefix="gp-svc-"))
    ports = {
        "POSTGRES_PORT": free_port(),
        "MLFLOW_PORT": free_port(),
        "PREFECT_PORT": free_port(),
        "DVC_REMOTE_SSH_PORT": free_port(),
    }
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("GENPIPE_")},
        "GENPIPE_ROOT": str(REPO),
        "GENPIPE_SERVICES_STATE_DIR": str(state),
        **{f"GENPIPE_SERVICES_{k}": str(v) for k, v in ports.items()},
    }
    services = TeamServices(state, env, ports)
    try:
        done = services.cli("up")
        assert done.returncode == 0, done.stdout + done.stderr
        yield services
    finally:
        services.cli("down")
        if left := processes.marked(state):
            processes.terminate(left, signal.SIGKILL, 30)
        shutil.rmtree(state, ignore_errors=True)
