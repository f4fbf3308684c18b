"""The flow over the real DVC stages, tiny params: `make flow` on digits and `make pipeline-mnist`."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from genpipe.overrides import as_override_strings
from pipelines.genpipe_flow import genpipe_pipeline, main
from tests.conftest import dvc_stages
from tests.pipelines.conftest import TINY_REAL_PARAMS

STAGES = dvc_stages()

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
    # champions always runs; after this run's own promotion its snapshot moved, so what scores
    # the champion (reusing the report's numbers), decide and register run too, nothing else
    outcomes = {s: v["outcome"] for s, v in again["stages"].items()}
    snapshot = {"champions", "score_champions", "decide", "register"}
    assert outcomes == {**dict.fromkeys(STAGES, "skipped"), **dict.fromkeys(snapshot, "ran")}


def test_mnist_preset_runs_the_28x28_pipeline_from_a_loopback_mirror(
    project_copy: Path,
    serve_dir: Callable[[Path], str],
    mnist_files: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`make pipeline-mnist` as the flow CLI runs it: the shipped preset, the mirror, then -S.

    The preset's epochs and evaluate sizes are shrunk with -S (which comes after the preset, so
    it wins); the full preset's run is measured in docs/benchmarks.md.
    """
    from mlflow import MlflowClient

    url = serve_dir(mnist_files)
    shrink = {
        "data.max_images": 1500,
        "vae.epochs": 1,
        "gan.epochs": 1,
        "gan.snapshots": 1,
        "evaluator.epochs": 1,
        "evaluator.min_test_accuracy": 0.0,
        **{k: v for k, v in TINY_REAL_PARAMS.items() if k.startswith("evaluate.")},
    }
    overrides = as_override_strings(shrink)
    argv = ["--preset", str(project_copy / "params/mnist.yaml"), "--project", str(project_copy)]
    argv += ["-S", f"data.download.mirrors=[{url}]"]
    for item in overrides:
        argv += ["-S", item]

    assert main(argv) == 0
    assert "register=ran" in capsys.readouterr().out

    params = yaml.safe_load((project_copy / "params.yaml").read_text())
    assert params["data"]["dataset"] == "mnist"
    assert params["vae"]["base_channels"] == 16  # from the preset
    assert params["vae"]["epochs"] == 1  # -S after the preset wins
    source = json.loads((project_copy / "data/raw/source.json").read_text())
    assert [f["url"] for f in source["files"]] == [
        f"{url}t10k-images-idx3-ubyte.gz",
        f"{url}t10k-labels-idx1-ubyte.gz",
    ]
    assert source["image_shape"] == [1, 28, 28]
    report = json.loads((project_copy / "data/eval/report.json").read_text())
    assert set(report["generation"]) >= {"vae", "gan", "real"}
    client = MlflowClient()
    for task in ("generation", "restoration"):
        champion = client.get_model_version_by_alias(f"genpipe-mnist-{task}", "champion")
        assert champion.tags["genpipe.task"] == task
