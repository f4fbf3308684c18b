"""The flow over the real DVC stages on digits, tiny params: the `make flow` path, end to end."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from pipelines.genpipe_flow import STAGES, genpipe_pipeline
from tests.pipelines.conftest import TINY_REAL_PARAMS

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_harness")]


def test_real_pipeline_tags_runs_registers_champions_then_noop(project_copy: Path) -> None:
    from mlflow import MlflowClient

    t0 = time.perf_counter()
    result = genpipe_pipeline(project_dir=str(project_copy), overrides=TINY_REAL_PARAMS)
    print(f"real pipeline, tiny params: {time.perf_counter() - t0:.1f} s")

    run_id = result["pipeline_run_id"]
    assert {s: v["outcome"] for s, v in result["stages"].items()} == dict.fromkeys(STAGES, "ran")
    client = MlflowClient()
    tagged = client.search_runs(
        [e.experiment_id for e in client.search_experiments()],
        filter_string=f"tags.`genpipe.pipeline_run_id` = '{run_id}'",
    )
    tagged_ids = {r.info.run_id for r in tagged}
    for model in ("vae", "gan", "evaluator"):  # run.json: the model's MLflow run (ARCHITECTURE.md)
        info = json.loads((project_copy / "data/models" / model / "run.json").read_text())
        assert info["run_id"] in tagged_ids, model
    for task in ("generation", "restoration"):
        assert client.get_model_version_by_alias(f"genpipe-digits-{task}", "champion").version

    t0 = time.perf_counter()
    again = genpipe_pipeline(project_dir=str(project_copy))
    print(f"no-op flow on the real pipeline: {time.perf_counter() - t0:.1f} s")
    assert {s: v["outcome"] for s, v in again["stages"].items()} == dict.fromkeys(STAGES, "skipped")
