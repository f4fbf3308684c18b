"""End to end: a real Prefect server, a process work pool, prefect.yaml deployed, a worker.

The test starts `prefect server` on 127.0.0.1 with the per-test PREFECT_HOME (conftest) and a
worker, each in its own process group, and stops them with SIGTERM, then SIGKILL.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import venv_bin
from tests.pipelines.conftest import prefect_server, stop_group, trace

pytestmark = pytest.mark.slow

POOL = "genpipe-process"


@pytest.fixture
def prefect_stack(tmp_path: Path) -> Iterator[tuple[str, dict[str, str], Path]]:
    """A started Prefect server: yields (api_url, env for the prefect CLI, log folder)."""
    logs = tmp_path / "logs"
    logs.mkdir()
    with prefect_server(tmp_path / "prefect-server") as api:
        yield api, {**os.environ, "PREFECT_API_URL": api}, logs


def _deploy_and_run(
    api: str, env: dict[str, str], logs: Path, project: Path, parameters: dict[str, Any]
) -> Any:
    """Create the pool, deploy prefect.yaml from `project`, start a worker, run `genpipe`."""
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_URL, temporary_settings

    prefect = str(venv_bin() / "prefect")
    for cmd in (  # what `make prefect-pool prefect-deploy` runs
        [prefect, "work-pool", "create", POOL, "--type", "process"],
        [prefect, "work-pool", "set-concurrency-limit", POOL, "1"],
        [str(venv_bin() / "python"), "-m", "pipelines.deploy"],
    ):
        done = subprocess.run(cmd, cwd=project, env=env, capture_output=True, text=True)
        assert done.returncode == 0, f"{' '.join(cmd)}:\n{done.stdout}\n{done.stderr}"
    worker = subprocess.Popen(
        [prefect, "worker", "start", "--pool", POOL],
        cwd=logs,  # the deployment's pull step, not the worker's cwd, must find the project
        env=env,
        stdout=(logs / "worker.log").open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        with temporary_settings({PREFECT_API_URL: api}):
            flow_run = run_deployment(
                "genpipe-pipeline/genpipe", parameters=parameters, timeout=1800
            )
            weekly = _read_deployment("genpipe-pipeline/genpipe-weekly")
    finally:
        stop_group(worker)
    assert flow_run.state is not None
    assert flow_run.state.is_completed(), (
        f"{flow_run.state}\n--- worker log ---\n{(logs / 'worker.log').read_text()[-5000:]}"
    )
    assert weekly.paused and weekly.schedules, "the weekly deployment should be scheduled, paused"
    return flow_run


def _read_deployment(name: str) -> Any:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return client.read_deployment_by_name(name)


def test_deployment_runs_fake_pipeline_through_worker(
    prefect_stack: tuple[str, dict[str, str], Path], fake_project: Path
) -> None:
    """The deployment machinery itself, with the stage graph stubbed by fake_stage.py."""
    api, env, logs = prefect_stack

    flow_run = _deploy_and_run(api, env, logs, fake_project, {"overrides": ["vae.epochs=2"]})

    records = trace(fake_project, "register")
    assert records and {r["run_id"] for r in records} == {str(flow_run.id)}
