"""`genpipe registry show|rollback` on the per-test SQLite store; clear errors when it fails."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import pytest
import yaml
from mlflow import MlflowClient
from typer.testing import CliRunner

from genpipe.cli import app
from genpipe.registry import mlflow_registry
from tests.params import raw_params
from tests.registry.conftest import free_port

NAME = "genpipe-digits-generation"


def params_file(tmp_path: Path) -> str:
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw_params()))
    return str(path)


def apply_decisions(champions: list[int]) -> None:
    """Three versions (sources need no real model for this); decision i puts `champion` on
    champions[i] and `challenger` on version i + 1."""
    from genpipe.tracking import configure_mlflow

    configure_mlflow()
    client = MlflowClient()
    client.create_registered_model(NAME)
    run_id = client.create_run(client.create_experiment("cli")).info.run_id
    for i, champion in enumerate(champions):
        tags = {"genpipe.family": "gan", mlflow_registry.CANDIDATE_TAG: f"c{i}"}
        mv = client.create_model_version(NAME, f"runs:/{run_id}/model", run_id=run_id, tags=tags)
        mlflow_registry.point(NAME, str(champion), str(mv.version), f"decision-{i}")


def test_registry_rollback_and_show(tmp_path: Path) -> None:
    apply_decisions([1, 2, 2])  # v1 champion, v2 takes it, v3 only challenges
    runner, params = CliRunner(), params_file(tmp_path)
    done = runner.invoke(app, ["registry", "rollback", "generation", "--params", params])
    assert done.exit_code == 0, done.output
    assert "champion v2 -> v1" in done.output
    assert str(MlflowClient().get_registered_model(NAME).aliases["champion"]) == "1"

    shown = runner.invoke(app, ["registry", "show", "generation", "--params", params])
    assert shown.exit_code == 0, shown.output
    info = json.loads(shown.output)["generation"]
    assert info["aliases"] == {"champion": "1", "challenger": "3"}
    assert info["history"] == ["1"] and info["last_rollback"]["from"] == "2"
    assert info["versions"]["2"]["rolled_back"]

    again = runner.invoke(app, ["registry", "rollback", "generation", "--params", params])
    assert again.exit_code == 2 and "no previous champion" in again.output


def test_cli_errors_name_the_problem(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runner, params = CliRunner(), params_file(tmp_path)
    missing = runner.invoke(app, ["generate", "--params", params, "--out", str(tmp_path / "g.png")])
    assert missing.exit_code == 2 and f"no champion for '{NAME}'" in missing.output
    bad = runner.invoke(app, ["registry", "rollback", "colouring", "--params", params])
    assert bad.exit_code == 2 and "unknown task 'colouring'" in bad.output
    uri = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    down = runner.invoke(app, ["generate", "--params", params, "--out", str(tmp_path / "g.png")])
    assert down.exit_code == 2 and uri in down.output
    assert not (tmp_path / "g.png").exists()
    mlflow.set_tracking_uri(None)
