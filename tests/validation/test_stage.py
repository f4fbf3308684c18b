"""The `validate` stage CLI: exit codes, summary.json, Data Docs and the MLflow run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from mlflow.tracking import MlflowClient

from genpipe.data.dataset import load_prepared
from genpipe.stages import validate
from tests.conftest import REPO
from tests.validation.conftest import replace_split


def only_run(experiment: str = "genpipe-digits"):
    client = MlflowClient(os.environ["MLFLOW_TRACKING_URI"])
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None, f"no MLflow experiment {experiment}"
    (run,) = client.search_runs([exp.experiment_id])
    return client, run


def test_stage_passes_and_logs_summary_and_docs_to_mlflow(prepared: Path, tmp_path: Path) -> None:
    out = tmp_path / "validation"
    (out / "docs" / "stale").mkdir(parents=True)
    code = validate.main(
        ["--params", str(REPO / "params.yaml"), "--prepared", str(prepared), "--out", str(out)]
    )
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["success"] and summary["failures"] == []
    assert (out / "docs" / "index.html").is_file() and not (out / "docs" / "stale").exists()
    assert not list(out.glob(".docs.*")), "staging folder left behind"

    client, run = only_run()
    assert run.info.run_name == "validate" and run.info.status == "FINISHED"
    assert run.data.tags["genpipe.stage"] == "validate"
    assert run.data.tags["genpipe.data_hash"] == load_prepared(prepared).data_hash
    assert run.data.metrics["validation_success"] == 1.0
    assert run.data.params["validate.class_proportion.min"] == "0.02"
    logged = json.loads(
        Path(client.download_artifacts(run.info.run_id, "summary.json", str(tmp_path))).read_text()
    )
    assert logged == summary
    assert "docs/index.html" in {a.path for a in client.list_artifacts(run.info.run_id, "docs")}


def test_stage_fails_on_leakage_with_exit_2_and_names_it(prepared: Path, tmp_path: Path) -> None:
    data = load_prepared(prepared)
    train = data.train.images.copy()
    train[0] = data.test.images[0]
    replace_split(prepared, "train", images=train)
    out = tmp_path / "validation"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "genpipe.stages.validate",
            "--params",
            str(REPO / "params.yaml"),
            "--prepared",
            str(prepared),
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert proc.returncode == 2, proc.stderr
    assert "genpipe validate: error: 1 of" in proc.stderr and "no_leakage" in proc.stderr
    assert "split=train index=0" in proc.stderr and "Traceback" not in proc.stderr
    assert "Skipping registering function" not in proc.stderr, "GX log noise leaked"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["success"] is False and summary["expectations"]["no_leakage"] is False
    assert summary["failed"] == 1 and summary["failures"][0]["check"] == "no_leakage"
    assert (out / "docs" / "index.html").is_file()

    _, run = only_run()
    assert run.info.status == "FAILED" and run.data.tags["genpipe.validation_success"] == "false"
    assert run.data.metrics["expectations_failed"] == 1.0
