"""decide + register on the per-test SQLite store: the registry holds the last decision, is
refilled after a wipe without duplicates, follows a revert, and respects a manual rollback."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import yaml
from mlflow import MlflowClient
from PIL import Image
from typer.testing import CliRunner

from genpipe.cli import app
from genpipe.registry import mlflow_registry, reconcile
from genpipe.stages import decide, register
from tests.params import raw_params
from tests.registry.conftest import metric

GEN, REST = "genpipe-digits-generation", "genpipe-digits-restoration"


def run_stage(report: Path, models: dict[str, Path], out: Path) -> dict:
    """decide then register, as dvc repro runs them; returns the decision record."""
    params = out.parent / "params.yaml"
    params.write_text(yaml.safe_dump(raw_params()))
    argv = ["--params", str(params), "--report", str(report), "--out", str(out)]
    assert decide.main([*argv, "--metrics", str(out / "metrics.json")]) == 0
    assert register.main(["--decision", str(out / "decision.json")]) == 0
    return json.loads((out / "decision.json").read_text())


def aliases(name: str) -> dict[str, str]:
    return {a: str(v) for a, v in MlflowClient().get_registered_model(name).aliases.items()}


def versions(name: str) -> list[str]:
    return sorted(str(v.version) for v in MlflowClient().search_model_versions(f"name = '{name}'"))


def with_incumbent(report_path: Path, task: str, version: str, value: float) -> Path:
    """The report as evaluate writes it when the registry's champion was scored beside."""
    report = json.loads(report_path.read_text())
    tags = MlflowClient().get_model_version(GEN if task == "generation" else REST, version).tags
    key = "fd" if task == "generation" else "psnr"
    report["incumbents"][task] = {
        "version": version,
        "candidate_id": tags[mlflow_registry.CANDIDATE_TAG],
        "family": tags["genpipe.family"],
        "method": None if task == "generation" else tags["genpipe.method"],
        "weights_hash": "w",
        "scored": True,
        "reason": None,
        "same_as": None,
        "scores": {key: metric(value)},
    }
    out = report_path.with_name(report_path.stem + f"-inc-{task}.json")
    out.write_text(json.dumps(report))
    return out


def test_register_follows_decisions_idempotently(
    tmp_path: Path, tiny_models: dict[str, Path], write_report: Callable[..., Path]
) -> None:
    out = tmp_path / "register"
    first_report = write_report(fd={"vae": 12.0, "gan": 8.0}, psnr={"vae": 20.0, "gan": 18.0})
    first = run_stage(first_report, tiny_models, out)
    assert first["tasks"]["generation"]["verdict"]["winner"]["family"] == "gan"
    assert aliases(GEN) == {"champion": "1", "challenger": "1"}
    assert aliases(REST) == {"champion": "1", "challenger": "1"}
    tags = MlflowClient().get_model_version(GEN, "1").tags
    assert tags["genpipe.family"] == "gan" and float(tags["genpipe.metric_value"]) == 8.0
    assert json.loads(tags["genpipe.metric_ci"]) == [7.9, 8.1]
    assert tags["genpipe.protocol_hash"] == "proto-1" and tags["genpipe.git_commit"]
    assert "| generation | fd | gan |" in (out / "decision.md").read_text()
    headline = json.loads((out / "metrics.json").read_text())
    assert headline["generation"]["winner"] == "gan"

    # the same decision again: the cheap check says the registry holds it; nothing is added
    assert reconcile.in_sync(first)
    run_stage(first_report, tiny_models, out)
    assert versions(GEN) == ["1"] and versions(REST) == ["1"]

    # the champion (v1, scored 8.0 by this protocol) against a new, swapped pair: the VAE
    # (same tiny weights file as before, now at FD 6.0) challenges and wins
    swapped = with_incumbent(
        write_report(fd={"vae": 6.0, "gan": 9.0}, psnr={"vae": 20.0, "gan": 18.0}),
        "generation",
        "1",
        8.0,
    )
    second = run_stage(swapped, tiny_models, out)
    assert second["tasks"]["generation"]["champion"] == "challenger"
    assert aliases(GEN) == {"champion": "2", "challenger": "2"}
    history = json.loads(MlflowClient().get_registered_model(GEN).tags[mlflow_registry.HISTORY_TAG])
    assert history == ["1", "2"]

    # back to the first decision (a reverted param restores it from DVC's run-cache)
    run_stage(first_report, tiny_models, out)
    assert aliases(GEN) == {"champion": "1", "challenger": "1"}
    assert versions(GEN) == ["1", "2"]  # found by candidate id, not registered again

    runs = mlflow.search_runs(
        experiment_names=["genpipe-digits"], filter_string="attributes.run_name = 'register'"
    )
    assert len(runs) == 2  # a run only when a version was registered
    assert not any(m.name.endswith(".lock") for m in MlflowClient().search_registered_models())


def test_a_wiped_store_is_refilled_once(
    tmp_path: Path,
    tiny_models: dict[str, Path],
    write_report: Callable[..., Path],
    isolated_stores: Path,
    migrated_mlflow_db: Path,
) -> None:
    report = write_report(fd={"vae": 12.0, "gan": 8.0}, psnr={"vae": 20.0, "gan": 18.0})
    record = run_stage(report, tiny_models, tmp_path / "register")
    shutil.copy(migrated_mlflow_db, isolated_stores / "mlflow.db")  # the store is gone
    assert not reconcile.in_sync(record)
    assert register.main(["--decision", str(tmp_path / "register" / "decision.json")]) == 0
    assert register.main(["--decision", str(tmp_path / "register" / "decision.json")]) == 0
    assert versions(GEN) == ["1"] and aliases(GEN)["champion"] == "1"
    assert versions(REST) == ["1"] and aliases(REST)["champion"] == "1"


def test_a_kept_champion_missing_from_the_store_gives_way_to_the_challenger(
    tmp_path: Path,
    tiny_models: dict[str, Path],
    write_report: Callable[..., Path],
    isolated_stores: Path,
    migrated_mlflow_db: Path,
) -> None:
    out = tmp_path / "register"
    run_stage(
        write_report(fd={"vae": 12.0, "gan": 8.0}, psnr={"vae": 20.0, "gan": 18.0}),
        tiny_models,
        out,
    )
    kept = with_incumbent(
        write_report(fd={"vae": 12.0, "gan": 9.0}, psnr={"vae": 20.0, "gan": 18.0}),
        "generation",
        "1",
        2.0,
    )
    # v1 is not the new GAN (other numbers do not matter: its candidate id is the GAN's); give
    # it another identity so the decision keeps a champion that is not among the candidates
    report = json.loads(kept.read_text())
    report["incumbents"]["generation"]["candidate_id"] = "an-older-model"
    kept.write_text(json.dumps(report))
    decision = run_stage(kept, tiny_models, out)
    assert decision["tasks"]["generation"]["champion"] == "incumbent"
    shutil.copy(migrated_mlflow_db, isolated_stores / "mlflow.db")
    assert register.main(["--decision", str(out / "decision.json")]) == 0
    assert aliases(GEN)["champion"] == aliases(GEN)["challenger"] == "1"


def test_a_manual_rollback_survives_the_next_repro(
    tmp_path: Path, tiny_models: dict[str, Path], write_report: Callable[..., Path]
) -> None:
    out = tmp_path / "register"
    run_stage(
        write_report(fd={"vae": 12.0, "gan": 8.0}, psnr={"vae": 20.0, "gan": 18.0}),
        tiny_models,
        out,
    )
    second = with_incumbent(
        write_report(fd={"vae": 6.0, "gan": 9.0}, psnr={"vae": 20.0, "gan": 18.0}),
        "generation",
        "1",
        8.0,
    )
    run_stage(second, tiny_models, out)
    assert aliases(GEN)["champion"] == "2"
    moved = mlflow_registry.rollback(GEN)
    assert (moved["from"], moved["to"]) == ("2", "1")
    assert register.main(["--decision", str(out / "decision.json")]) == 0
    assert aliases(GEN)["champion"] == "1"  # the same decision is not applied again
    client = MlflowClient()
    assert json.loads(client.get_registered_model(GEN).tags["genpipe.last_rollback"])["from"] == "2"
    with pytest.raises(mlflow_registry.RegistryError, match="no previous champion"):
        mlflow_registry.rollback(GEN)


def test_failure_on_the_second_task_puts_the_first_back(
    tmp_path: Path,
    tiny_models: dict[str, Path],
    write_report: Callable[..., Path],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "register"
    run_stage(
        write_report(fd={"vae": 12.0, "gan": 8.0}, psnr={"vae": 20.0, "gan": 18.0}),
        tiny_models,
        out,
    )
    real = mlflow_registry.point

    def flaky(name: str, *args: object) -> None:
        if name == REST:
            raise ConnectionError("server went away")
        real(name, *args)

    monkeypatch.setattr(mlflow_registry, "point", flaky)
    second = with_incumbent(
        write_report(fd={"vae": 6.0, "gan": 9.0}, psnr={"vae": 24.0, "gan": 18.0}),
        "generation",
        "1",
        8.0,
    )
    params = out.parent / "params.yaml"
    argv = ["--params", str(params), "--report", str(second), "--out", str(out)]
    assert decide.main([*argv, "--metrics", str(out / "metrics.json")]) == 0
    with pytest.raises(ConnectionError):
        register.main(["--decision", str(out / "decision.json")])
    # generation had moved to v2, and was put back: the registry is wholly on the old decision
    assert aliases(GEN) == {"champion": "1", "challenger": "1"}
    monkeypatch.setattr(mlflow_registry, "point", real)
    assert register.main(["--decision", str(out / "decision.json")]) == 0  # the rerun finishes
    assert aliases(GEN)["champion"] == "2" and versions(GEN) == ["1", "2"]


def test_champions_predict_in_python_and_through_the_cli(
    tmp_path: Path, tiny_models: dict[str, Path], write_report: Callable[..., Path]
) -> None:
    run_stage(
        write_report(fd={"vae": 12.0, "gan": 8.0}, psnr={"vae": 20.0, "gan": 18.0}),
        tiny_models,
        tmp_path / "o",
    )
    gen = mlflow.pyfunc.load_model(f"models:/{GEN}@champion")
    images = gen.predict(pd.DataFrame({"n": [3, 2], "seed": [0, 0]}))
    assert list(images["request"]) == [0, 0, 0, 1, 1]
    first = np.stack(images["image"].to_numpy())
    assert first.shape == (5, 64) and first.min() >= 0 and first.max() <= 1
    np.testing.assert_allclose(first[:2], first[3:])  # same seed, same images
    rest = mlflow.pyfunc.load_model(f"models:/{REST}@champion")
    noisy = np.random.default_rng(0).random((2, 64))
    mask = np.ones(64)
    mask[:32] = 0
    restored = np.stack(
        rest.predict(pd.DataFrame({"image": list(noisy), "mask": [mask, None]}))["restored"]
    )
    assert restored.shape == (2, 64)
    np.testing.assert_allclose(restored[0, 32:], noisy[0, 32:], atol=1e-6)  # observed pixels kept
    assert gen.metadata.signature.inputs.input_names() == ["n", "seed"]

    # the same champions through the people-facing CLI
    runner, params = CliRunner(), str(tmp_path / "params.yaml")
    done = runner.invoke(
        app, ["generate", "--n", "5", "--out", str(tmp_path / "grid.png"), "--params", params]
    )
    assert done.exit_code == 0, done.output
    # a 3x2 grid of 8x8 images at x4 with 1 px gaps
    assert Image.open(tmp_path / "grid.png").size == (3 * (32 + 1) + 1, 2 * (32 + 1) + 1)
    Image.fromarray((noisy[0].reshape(8, 8) * 255).astype(np.uint8)).save(tmp_path / "noisy.png")
    Image.fromarray((mask.reshape(8, 8) * 255).astype(np.uint8)).save(tmp_path / "mask.png")
    args = ["restore", str(tmp_path / "noisy.png"), "--mask", str(tmp_path / "mask.png")]
    done = runner.invoke(app, [*args, "--out", str(tmp_path / "clean.png"), "--params", params])
    assert done.exit_code == 0, done.output
    clean = np.asarray(Image.open(tmp_path / "clean.png"), dtype=np.float64) / 255
    assert clean.shape == (8, 8)
    np.testing.assert_allclose(
        clean.reshape(-1)[32:], noisy[0, 32:], atol=1 / 255
    )  # observed rows kept
