"""The flow over the real DVC stages, tiny params: `make pipeline-mnist` (the flow on digits runs
real stages in the README's `make flow` block, tests/e2e/test_readme.py, and on the team's
services in tests/e2e/test_multihost.py)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from genpipe.overrides import as_override_strings
from pipelines.genpipe_flow import main
from tests.pipelines.conftest import TINY_REAL_PARAMS

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_harness")]


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
