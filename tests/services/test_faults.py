"""Faults as a user suffers them, each test with services of its own (it breaks them):

- kill -9 of every pid `make services-status` reports (each service's, the one holding its port,
  `mlflow server`'s wrapper too): the status never claims a dead pid, the service answers again by
  itself, and a stage logging to MLflow meanwhile finishes; then supervisord itself, which
  `services up` recovers;
- PostgreSQL down longer than the client's retry budget under a training: the stage fails with
  genpipe's message naming the server, the database's address and `make services-status`; the
  next `dvc repro` after `services up` leaves no RUNNING run, though the stage is restored from
  the run-cache.
Retry budgets are shrunk through `services.client` (GENPIPE_SERVICES_CLIENT_*).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import copy_project, venv_bin
from tests.e2e.test_dvc_pipeline import ran
from tests.e2e.tiny import shrink_params
from tests.services.conftest import TeamServices, start_team, stop_team

pytestmark = [pytest.mark.slow, pytest.mark.timeout(3600)]

BACK_WITHIN = 600.0  # a deadline, not a goal: MLflow restarts in about a minute at load 6

LOGGER_STAGE = """
import os, time
from genpipe import tracking
with tracking.live_run("heartbeat", "faults") as run:
    open("run_id.txt", "w").write(run.info.run_id)
    step = 0
    while not os.path.exists(os.environ["STOP_FILE"]):
        step += 1
        tracking.log_step({"beat": step}, step)  # as a training logs each epoch
        time.sleep(0.5)
open("done.txt", "w").write(str(step))
"""
LOGGER_DVC = """
stages:
  heartbeat:
    cmd: python heartbeat.py
    deps: [heartbeat.py]
    outs: [done.txt]
"""


def _row(team: TeamServices, name: str) -> list[str]:
    _, rows = team.status()
    return rows[name]


def _holder(row: list[str]) -> int | None:
    """The pid holding the service's port, as `status` reports it ("held by pid N")."""
    held = row[row.index("by") + 2]
    return None if held == "-" else int(held.split(",")[0])


def _wait_healthy(team: TeamServices, name: str, killed: int) -> None:
    deadline = time.monotonic() + BACK_WITHIN
    while True:
        row = _row(team, name)
        assert _holder(row) != killed, f"status reports the killed pid {killed}: {row}"
        if row[1] == "RUNNING" and row[-1] == "ok":
            return
        assert time.monotonic() < deadline, f"{name} not back within {BACK_WITHIN:.0f} s: {row}"
        time.sleep(1)


@pytest.fixture
def faulty_team() -> TeamServices:
    """Services whose clients wait out a slow restart: MLflow's most patient retry budget (10
    retries, up to 120 s apart, about 12 minutes); a busy shared CI machine restarts slowly."""
    services = start_team(
        prefix="gp-flt-", CLIENT_HTTP_MAX_RETRIES="10", CLIENT_HTTP_BACKOFF_FACTOR="4"
    )
    yield services
    stop_team(services)


def test_every_killed_pid_comes_back_and_a_running_stage_finishes(
    faulty_team: TeamServices, tmp_path: Path
) -> None:
    from mlflow import MlflowClient

    team = faulty_team
    stop = tmp_path / "stop"
    env = team.client_env(
        PATH=f"{venv_bin()}{os.pathsep}{os.environ['PATH']}",
        STOP_FILE=str(stop),
        GENPIPE_ROOT=str(tmp_path / "stage"),
    )
    stage = tmp_path / "stage"
    stage.mkdir()
    (stage / "heartbeat.py").write_text(LOGGER_STAGE)
    (stage / "dvc.yaml").write_text(LOGGER_DVC)
    for cmd in (["git", "init", "-q"], [str(venv_bin() / "dvc"), "init", "-q"]):
        subprocess.run(cmd, cwd=stage, env=env, check=True, capture_output=True)
    log = tmp_path / "repro.log"
    with log.open("w") as out:
        repro = subprocess.Popen(
            [str(venv_bin() / "dvc"), "repro"], cwd=stage, env=env, stdout=out, stderr=out
        )
    deadline = time.monotonic() + 300
    while not (stage / "run_id.txt").exists():
        assert repro.poll() is None, log.read_text()
        assert time.monotonic() < deadline, "the stage never opened its run"
        time.sleep(0.5)

    killed = []
    for name in ("postgres", "mlflow", "prefect", "sshd"):
        # the pid holding the port; for mlflow also supervisord's pid, the `mlflow server`
        # wrapper, which alone used to leave its uvicorn worker serving
        for which in ("holder", "program") if name == "mlflow" else ("holder",):
            row = _row(team, name)
            pid = _holder(row) if which == "holder" else int(row[3])
            assert pid is not None, row
            os.kill(pid, signal.SIGKILL)
            killed.append((name, pid))
            _wait_healthy(team, name, pid)

    supervisord = int(_row(team, "supervisord")[2])
    os.kill(supervisord, signal.SIGKILL)
    code, rows = team.status()
    assert code == 3 and rows["supervisord"][1] == "not", rows
    up = team.cli("up")
    assert up.returncode == 0, up.stdout + up.stderr
    assert "a killed supervisord left running" in up.stdout
    code, rows = team.status()
    assert code == 0 and int(rows["supervisord"][2]) != supervisord, rows

    stop.touch()
    assert repro.wait(timeout=900) == 0, log.read_text()[-4000:]
    client_env = team.client_env()
    os.environ.update(
        {k: client_env[k] for k in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")}
    )
    try:
        run_id = (stage / "run_id.txt").read_text()
        client = MlflowClient(tracking_uri=client_env["MLFLOW_TRACKING_URI"])
        assert client.get_run(run_id).info.status == "FINISHED"
        beats = [m.step for m in client.get_metric_history(run_id, "beat")]
        assert beats == list(range(1, int((stage / "done.txt").read_text()) + 1))
    finally:
        for k in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
            os.environ.pop(k, None)
    assert len(killed) == 5


@pytest.fixture
def impatient_team() -> TeamServices:
    """Services whose clients give up after one retry, 1 s apart, 20 s per request."""
    services = start_team(
        prefix="gp-pg-",
        CLIENT_HTTP_MAX_RETRIES="1",
        CLIENT_HTTP_BACKOFF_FACTOR="1",
        CLIENT_HTTP_TIMEOUT_SECONDS="20",
    )
    yield services
    stop_team(services)


def _running_runs(client_env: dict[str, str]) -> list[str]:
    from mlflow import MlflowClient

    os.environ.update(
        {k: client_env[k] for k in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")}
    )
    try:
        client = MlflowClient(tracking_uri=client_env["MLFLOW_TRACKING_URI"])
        exp = client.get_experiment_by_name("genpipe-digits")
        runs = client.search_runs([exp.experiment_id], "attributes.status = 'RUNNING'")
        return [f"{r.info.run_name} {r.info.run_id}" for r in runs]
    finally:
        for k in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
            os.environ.pop(k, None)


def _metric_logged(client_env: dict[str, str], stage: str) -> bool:
    return any(r.startswith(stage) for r in _running_runs(client_env))


def test_postgres_down_fails_a_training_with_genpipes_message_and_leaves_no_running_run(
    impatient_team: TeamServices, tmp_path: Path
) -> None:
    team = impatient_team
    env = team.client_env(PATH=f"{venv_bin()}{os.pathsep}{os.environ['PATH']}")
    env.pop("GENPIPE_ARTIFACT_ROOT", None)
    dvc = str(venv_bin() / "dvc")
    project = copy_project(tmp_path / "project")
    shrink_params(project, {"evaluate": {"draws": 2}})
    (project / "dvc.lock").unlink(missing_ok=True)
    for args in (
        ["add", "-A"],
        ["-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "tiny"],
    ):
        subprocess.run(["git", *args], cwd=project, check=True, capture_output=True)
    # the stages up to train_vae are enough: its run record is what the last repro restores
    first = subprocess.run(
        [dvc, "repro", "train_vae"], cwd=project, env=env, capture_output=True, text=True
    )
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]

    # a longer VAE training, and the database goes away under it
    shrink_params(project, {"vae": {"epochs": 400}})
    log = tmp_path / "train.log"
    with log.open("w") as out:
        train = subprocess.Popen(
            [dvc, "repro", "train_vae"], cwd=project, env=env, stdout=out, stderr=out
        )
    deadline = time.monotonic() + 600
    while not _metric_logged(env, "train_vae"):
        assert train.poll() is None, log.read_text()[-4000:]
        assert time.monotonic() < deadline, "train_vae never opened its run"
        time.sleep(1)
    assert team.cli("down", "postgres").returncode == 0
    assert train.wait(timeout=900) != 0
    output = log.read_text()
    pg_port = team.ports["POSTGRES_PORT"]
    assert f"genpipe train_vae: error: MLflow server at {env['MLFLOW_TRACKING_URI']}" in output
    assert f"port {pg_port} failed" in output and "make services-status" in output, output[-3000:]
    assert "Traceback" not in output, output[-6000:]

    # back up; the params as committed: train_vae comes from the run-cache, and champions (the
    # stage that cleans orphans) marks the dead attempt's run FAILED
    assert team.cli("up").returncode == 0
    assert _running_runs(env) != []  # the dead attempt's
    subprocess.run(["git", "checkout", "params.yaml"], cwd=project, check=True)
    again = subprocess.run(
        [dvc, "repro", "train_vae", "champions"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
    )
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "train_vae" not in ran(again.stdout + again.stderr)
    assert "marked run" in again.stderr and "FAILED" in again.stderr
    assert _running_runs(env) == []
