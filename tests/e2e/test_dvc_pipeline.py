"""`dvc repro` end to end in a throwaway git repo: the real stages, shrunk params."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import venv_bin
from tests.e2e.tiny import shrink_params

pytestmark = pytest.mark.slow


def dvc(project: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{venv_bin()}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run(
        [str(venv_bin() / "dvc"), *args],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
    )


def ran(output: str) -> set[str]:
    """Names of the stages that `dvc repro` actually executed."""
    return {
        line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage '")
    }


def commit(project: Path, message: str) -> None:
    for args in (
        ["add", "-A"],
        ["-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", message],
    ):
        subprocess.run(["git", *args], cwd=project, check=True, capture_output=True)


ALL = {
    "download",
    "prepare",
    "validate",
    "train_vae",
    "train_gan",
    "train_evaluator",
    "evaluate",
    "register",
}


def test_full_repro_then_noop_then_targeted_reruns(project_copy: Path) -> None:
    shrink_params(project_copy)
    first = dvc(project_copy, "repro")
    assert first.returncode == 0, first.stdout + first.stderr
    assert ran(first.stdout) == ALL

    meta = json.loads((project_copy / "data/prepared/meta.json").read_text())
    assert meta["dataset"] == "digits" and sum(meta["counts"].values()) == 1797
    summary = json.loads((project_copy / "data/validation/summary.json").read_text())
    assert summary["success"] is True
    metrics = json.loads((project_copy / "data/metrics/evaluate.json").read_text())
    assert "generation.gan.fd" in metrics and "generation.vae.fd" in metrics
    decision = json.loads((project_copy / "data/register/decision.json").read_text())
    assert set(decision["tasks"]) == {"generation", "restoration"}
    from mlflow import MlflowClient

    for task, record in decision["tasks"].items():
        assert record["winner"]["family"] in {"vae", "gan"}
        champion = MlflowClient().get_model_version_by_alias(f"genpipe-digits-{task}", "champion")
        assert champion.tags["genpipe.family"] == record["winner"]["family"]
    commit(project_copy, "first run")

    again = dvc(project_copy, "repro")
    assert again.returncode == 0, again.stderr
    assert ran(again.stdout) == set(), again.stdout

    # editing a stage's CLI module makes that stage stale (dvc.yaml lists it in its deps)
    cli = project_copy / "src/genpipe/stages/evaluate.py"
    original = cli.read_text()
    cli.write_text(original + "\n# edited\n")
    status = dvc(project_copy, "status", "--json")
    assert status.returncode == 0, status.stderr
    assert set(json.loads(status.stdout)) == {"evaluate"}, status.stdout
    cli.write_text(original)

    shrink_params(project_copy, {"gan": {"lr": {"generator": 0.0003}}})
    gan_only = dvc(project_copy, "repro")
    assert gan_only.returncode == 0, gan_only.stdout + gan_only.stderr
    assert ran(gan_only.stdout) == {"train_gan", "evaluate", "register"}

    shrink_params(project_copy, {"data": {"seed": 1}})
    reseeded = dvc(project_copy, "repro")
    assert reseeded.returncode == 0, reseeded.stdout + reseeded.stderr
    assert {"prepare", "validate"} <= ran(reseeded.stdout)
    assert "download" not in ran(reseeded.stdout)
    assert (
        json.loads((project_copy / "data/prepared/meta.json").read_text())["data_hash"]
        != meta["data_hash"]
    )


def test_bad_data_stops_the_pipeline_before_training(project_copy: Path) -> None:
    # Class proportions of digits are ~10% each; demanding >= 50% must fail validation.
    shrink_params(project_copy, {"validate": {"class_proportion": {"min": 0.5, "max": 0.9}}})
    result = dvc(project_copy, "repro")
    assert result.returncode != 0
    assert ran(result.stdout) == {"download", "prepare", "validate"}
    assert "class" in (result.stdout + result.stderr).lower()
    assert not (project_copy / "data/models/vae/model.pt").exists()
