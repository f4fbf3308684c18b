"""champions, decide and register against a real `mlflow server` over HTTP: the stages, two
racing register stages, and a server that is down."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path

import mlflow
import pandas as pd
import pytest
import yaml
from mlflow import MlflowClient

from genpipe.stages import champions, register
from tests.params import raw_params
from tests.registry.conftest import free_port
from tests.registry.test_register_local import snapshot_and_decide


def decided(tmp_path: Path, report: Path, prefix: str) -> Path:
    """champions, score_champions (no champion yet) and decide for `report`, under models named
    <prefix>-digits-<task>; returns decision.json."""
    extra = {"register": {"model_name_prefix": prefix}}
    return snapshot_and_decide(report, tmp_path / "out", params_extra=extra)


@pytest.mark.slow
def test_register_over_http(
    mlflow_server: str,
    tmp_path: Path,
    write_report: Callable[..., Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    prefix = f"http{uuid.uuid4().hex[:6]}"
    report = write_report(fd={"vae": 9.0, "gan": 12.0}, psnr={"vae": 17.0, "gan": 21.0})
    decision = decided(tmp_path, report, prefix)
    record = json.loads(decision.read_text())
    assert record["tasks"]["generation"]["verdict"]["winner"]["family"] == "vae"
    assert record["tasks"]["restoration"]["verdict"]["winner"]["family"] == "gan"
    out = tmp_path / "applied.json"
    assert register.main(["--decision", str(decision), "--out", str(out)]) == 0
    assert json.loads(out.read_text())["tasks"]["generation"]["registered"] is True

    mlflow.set_tracking_uri(mlflow_server)
    client = MlflowClient()
    gen = client.get_registered_model(f"{prefix}-digits-generation")
    assert str(gen.aliases["champion"]) == "1"
    assert client.get_model_version(gen.name, "1").tags["genpipe.family"] == "vae"
    model = mlflow.pyfunc.load_model(f"models:/{gen.name}@champion")  # artifacts via the server
    assert len(model.predict(pd.DataFrame({"n": [5], "seed": [3]}))) == 5


@pytest.mark.slow
def test_two_register_stages_racing_register_each_model_once(
    mlflow_server: str, tmp_path: Path, write_report: Callable[..., Path]
) -> None:
    """Two clones apply the same decision to an empty server at once: the registry lock makes
    the second find the first's champion (the one its decision wants) and versions, instead of
    registering duplicates."""
    prefix = f"race{uuid.uuid4().hex[:6]}"
    report = write_report(fd={"vae": 12.0, "gan": 8.0}, psnr={"vae": 20.0, "gan": 18.0})
    decision = decided(tmp_path, report, prefix)
    env = os.environ | {"MLFLOW_TRACKING_URI": mlflow_server}
    command = [sys.executable, "-m", "genpipe.stages.register", "--decision", str(decision)]
    procs = [
        subprocess.Popen(
            [*command, "--out", str(tmp_path / f"applied{i}.json")],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        for i in range(2)
    ]
    logs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [log[-2000:] for log in logs]

    mlflow.set_tracking_uri(mlflow_server)
    client = MlflowClient()
    for task in ("generation", "restoration"):
        name = f"{prefix}-digits-{task}"
        assert len(client.search_model_versions(f"name = '{name}'")) == 1
        assert str(client.get_registered_model(name).aliases["champion"]) == "1"
    assert not any(m.name.endswith(".lock") for m in client.search_registered_models())
    applied = [json.loads((tmp_path / f"applied{i}.json").read_text()) for i in range(2)]
    assert sorted(a["tasks"]["generation"]["registered"] for a in applied) == [False, True]


def test_server_down_error_names_the_uri_and_writes_nothing(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    uri = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(raw_params()))
    assert (
        champions.main(
            [
                "--params",
                str(params),
                "--out",
                str(tmp_path / "c.json"),
                "--work",
                str(tmp_path / "work"),
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert uri in err and "does not answer" in err
    assert not (tmp_path / "c.json").exists()
