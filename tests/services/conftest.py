"""The real team services on 127.0.0.1, free ports, a temporary state folder; always stopped."""

from __future__ import annotations

import os
import shutil
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


def exports(text: str) -> dict[str, str]:
    """`export K=V` lines (shell-quoted values) as a dict."""
    import shlex

    found = {}
    for line in text.splitlines():
        key, _, value = line.removeprefix("export ").partition("=")
        found[key] = shlex.split(value)[0] if value else ""
    return found


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
        return {**env, **exports(done.stdout), **extra}

    def login(self, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
        """This test process's MLflow clients log in as the team's account; returns the
        client environment."""
        env = self.client_env()
        for key in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
            monkeypatch.setenv(key, env[key])
        return env

    def status(self) -> tuple[int, dict[str, list[str]]]:
        """`services status`: its exit code and each line's fields by its first word."""
        done = self.cli("status")
        return done.returncode, {ln.split()[0]: ln.split() for ln in done.stdout.splitlines()}

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


def start_team(prefix: str = "gp-svc-", **settings: str) -> TeamServices:
    """PostgreSQL, MLflow, Prefect and sshd under supervisord, from `python -m genpipe.services
    up` as a user runs it, on free ports; `settings`: more GENPIPE_SERVICES_* overrides."""
    from genpipe.services import system

    system.install_missing()  # a fresh CI machine has no openssh-server; we run as root there
    # a short path under /tmp: the postgres account must traverse it, and the socket path is short
    state = Path(tempfile.mkdtemp(prefix=prefix))
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
        # a first start migrates three databases: minutes on a machine shared by many sessions
        "GENPIPE_SERVICES_START_TIMEOUT_SECONDS": "900",
        **{f"GENPIPE_SERVICES_{k}": str(v) for k, v in ports.items()},
        **{f"GENPIPE_SERVICES_{k}": v for k, v in settings.items()},
    }
    services = TeamServices(state, env, ports)
    done = services.cli("up")
    if done.returncode != 0:
        stop_team(services)
        pytest.fail(f"services up failed:\n{done.stdout}\n{done.stderr}")
    return services


def stop_team(services: TeamServices) -> None:
    """`down`, then whatever of this state folder still runs (a test may have killed
    supervisord), then the folder."""
    from genpipe.services import supervisor
    from genpipe.services.settings import Layout

    services.cli("down")
    if left := supervisor.orphans(Layout(services.state)):
        supervisor.stop_processes(left, 30)
    shutil.rmtree(services.state, ignore_errors=True)


@pytest.fixture(scope="module")
def team() -> Iterator[TeamServices]:
    """One set of services for a module whose tests only need them running."""
    services = start_team()
    try:
        yield services
    finally:
        stop_team(services)
