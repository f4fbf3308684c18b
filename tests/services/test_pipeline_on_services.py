"""The whole genpipe pipeline against the team services: PostgreSQL-backed MLflow and Prefect
servers and the SSH DVC remote, started by `python -m genpipe.services up` on free ports.

A clone runs the Prefect flow (three trainings at once) on them. Elsewhere: writers logging at
once to one server (test_team_services.py), a second checkout's register refused and re-evaluated
(tests/e2e/test_team_registry.py), a clone that pulls from the SSH remote and finds the pipeline
up to date (test_team_flow.py, the README's team flow).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import copy_project, venv_bin
from tests.e2e.tiny import shrink_params
from tests.services.conftest import TeamServices

pytestmark = [pytest.mark.slow, pytest.mark.timeout(3600)]

SQLITE_MAGIC = b"SQLite format 3\x00"
TRAININGS = ("train_vae", "train_gan", "train_evaluator")


def sqlite_files(*roots: Path) -> list[Path]:
    found = []
    for root in roots:
        for path in root.rglob("*"):
            if path.is_file() and not path.is_symlink():
                with path.open("rb") as fh:
                    if fh.read(16) == SQLITE_MAGIC:
                        found.append(path)
    return found


def git(cwd: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.email=t@t", "-c", "user.name=t", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
    )


def test_the_pipeline_on_the_team_services(
    team: TeamServices, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow import MlflowClient

    team.login(monkeypatch)
    prefect_home = tmp_path / "prefect-home"
    env = team.client_env(
        PATH=f"{venv_bin()}{os.pathsep}{os.environ['PATH']}", PREFECT_HOME=str(prefect_home)
    )
    env.pop("GENPIPE_ARTIFACT_ROOT", None)

    a = copy_project(tmp_path / "a")
    shrink_params(a, {"evaluate": {"draws": 2}})
    (a / "dvc.lock").unlink(missing_ok=True)
    git(a, "add", "-A")
    git(a, "commit", "-qm", "tiny params")
    assert team.cli("dvc-remote", "--repo", str(a)).returncode == 0

    # the Prefect flow, its trainings at once, on the team's servers
    log = tmp_path / "flow.log"
    with log.open("w") as fh:  # a file, not a pipe: the flow's log would fill a pipe's buffer
        flow = subprocess.run(
            [sys.executable, "-m", "pipelines"],
            cwd=a,
            env=env,
            stdout=fh,
            stderr=subprocess.STDOUT,
            timeout=2400,
        )
    assert flow.returncode == 0, log.read_text()[-6000:]
    assert "register=ran" in log.read_text()

    client = MlflowClient(tracking_uri=env["MLFLOW_TRACKING_URI"])
    runs = client.search_runs(
        [client.get_experiment_by_name("genpipe-digits").experiment_id], max_results=1000
    )
    names = [r.info.run_name for r in runs]
    for stage in ("validate", *TRAININGS, "evaluate"):
        assert names.count(stage) == 1, (stage, sorted(names))
    params = yaml.safe_load((a / "params.yaml").read_text())
    epochs = {"train_vae": params["vae"]["epochs"], "train_gan": params["gan"]["epochs"]}
    curve = {"train_vae": "val_loss", "train_gan": "d_loss"}
    for r in runs:
        assert r.info.status == "FINISHED", (r.info.run_name, r.info.status)
        if r.info.run_name in epochs:
            history = client.get_metric_history(r.info.run_id, curve[r.info.run_name])
            assert [m.step for m in history] == list(range(1, epochs[r.info.run_name] + 1))
            artifacts = {a.path for a in client.list_artifacts(r.info.run_id, "model")}
            assert "model/model.pt" in artifacts
    for task in ("generation", "restoration"):
        assert client.get_model_version_by_alias(f"genpipe-digits-{task}", "champion")
    # A's flow tags its stage runs with its flow run's id; each model's run.json names its run
    pipeline_run = {r.info.run_id: r.data.tags.get("genpipe.pipeline_run_id") for r in runs}
    flow_ids = {
        pipeline_run[json.loads((a / f"data/models/{m}/run.json").read_text())["run_id"]]
        for m in ("vae", "gan", "evaluator")
    }
    assert len(flow_ids) == 1 and None not in flow_ids, flow_ids

    # no SQLite store was written anywhere: the clone, Prefect's home, the services' state
    assert sqlite_files(a, prefect_home, team.state / "mlflow-artifacts") == []
