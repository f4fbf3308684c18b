"""The register stage on the per-test SQLite store: champion rules, rollback, served models."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from PIL import Image
from typer.testing import CliRunner

from genpipe.cli import app
from genpipe.registry import mlflow_registry
from genpipe.stages import register

GEN, REST = "genpipe-digits-generation", "genpipe-digits-restoration"


def run_stage(report: Path, models: dict[str, Path], out: Path) -> dict:
    params = out.parent / "params.yaml"  # not the repo's: other stages' sections change under us
    params.write_text("data: {dataset: digits}\nregister: {model_name_prefix: genpipe}\n")
    argv = ["--params", str(params), "--report", str(report), "--out", str(out)]
    argv += ["--vae", str(models["vae"]), "--gan", str(models["gan"])]
    assert register.main(argv) == 0
    return json.loads((out / "decision.json").read_text())


def champion(name: str) -> str | None:
    found = MlflowClient().get_registered_model(name).aliases.get("champion")
    return None if found is None else str(found)


def test_champion_rules_and_rollback(
    tmp_path: Path, tiny_models: dict[str, Path], write_report: Callable[..., Path]
) -> None:
    out = tmp_path / "register"
    first = run_stage(
        write_report(fd={"vae": 12.0, "gan": 8.0}, psnr={"vae": 20.0, "gan": 18.0}),
        tiny_models,
        out,
    )
    gen = first["tasks"]["generation"]
    assert (gen["winner"]["family"], gen["runner_up"]["family"]) == ("gan", "vae")
    assert gen["registry"] == {
        "name": GEN,
        "version": "1",
        "promoted": True,
        "reason": "no champion existed",
        "previous_champion": None,
    }
    assert first["tasks"]["restoration"]["winner"]["method"] == "vae_amortised"
    assert champion(GEN) == "1" and champion(REST) == "1"
    assert "| generation | fd | gan |" in (out / "decision.md").read_text()

    # a worse run: challenger only, and the version says why
    worse = run_stage(
        write_report(fd={"vae": 14.0, "gan": 11.0}, psnr={"vae": 15.0, "gan": 14.0}),
        tiny_models,
        out,
    )
    assert worse["tasks"]["generation"]["registry"]["promoted"] is False
    assert "does not beat champion" in worse["tasks"]["generation"]["registry"]["reason"]
    client = MlflowClient()
    assert champion(GEN) == "1"
    assert str(client.get_registered_model(GEN).aliases["challenger"]) == "2"
    assert "does not beat" in client.get_model_version(GEN, "2").tags["genpipe.decision"]

    # much better numbers under another protocol: not comparable, champion stays
    other = write_report(
        fd={"vae": 3.0, "gan": 1.0}, psnr={"vae": 30.0, "gan": 29.0}, protocol_hash="proto-2"
    )
    incomparable = run_stage(other, tiny_models, out)
    assert "protocol hash differs" in incomparable["tasks"]["restoration"]["registry"]["reason"]
    assert champion(GEN) == "1" and champion(REST) == "1"

    # clearly better under the same protocol: promoted, history kept
    better = run_stage(
        write_report(fd={"vae": 5.0, "gan": 2.0}, psnr={"vae": 25.0, "gan": 22.0}), tiny_models, out
    )
    assert better["tasks"]["generation"]["registry"]["promoted"] is True
    assert better["tasks"]["generation"]["registry"]["previous_champion"] == "1"
    assert champion(GEN) == "4"
    v4 = client.get_model_version(GEN, "4").tags
    assert v4["genpipe.family"] == "gan" and v4["genpipe.protocol_hash"] == "proto-1"
    assert float(v4["genpipe.metric_value"]) == 2.0 and json.loads(v4["genpipe.metric_ci"]) == [
        1.9,
        2.1,
    ]
    assert v4["genpipe.data_hash"] == "data-1" and v4["genpipe.git_commit"]

    moved = mlflow_registry.rollback(GEN)
    assert (moved["from"], moved["to"]) == ("4", "1")
    assert champion(GEN) == "1"
    assert json.loads(client.get_registered_model(GEN).tags["genpipe.last_rollback"])["from"] == "4"
    with pytest.raises(mlflow_registry.RegistryError, match="no previous champion"):
        mlflow_registry.rollback(GEN)

    runs = mlflow.search_runs(
        experiment_names=["genpipe-digits"], filter_string="attributes.run_name = 'register'"
    )
    assert len(runs) == 4
    assert not any(m.name.endswith(".lock") for m in client.search_registered_models())


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
    runner, params = CliRunner(), str(tmp_path / "o" / ".." / "params.yaml")
    done = runner.invoke(
        app, ["generate", "--n", "5", "--out", str(tmp_path / "grid.png"), "--params", params]
    )
    assert done.exit_code == 0, done.output
    assert Image.open(tmp_path / "grid.png").size == (
        (3 * 9 + 1) * 4,
        (2 * 9 + 1) * 4,
    )  # 3x2 grid, x4
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


def test_failure_on_second_task_leaves_nothing_half_registered(
    tmp_path: Path,
    tiny_models: dict[str, Path],
    write_report: Callable[..., Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = mlflow_registry.promote_if_better

    def flaky(name: str, *args: object, **kwargs: object) -> mlflow_registry.Outcome:
        if name == REST:
            raise ConnectionError("server went away")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(mlflow_registry, "promote_if_better", flaky)
    report = write_report(fd={"vae": 12.0, "gan": 8.0}, psnr={"vae": 20.0, "gan": 18.0})
    with pytest.raises(ConnectionError):
        run_stage(report, tiny_models, tmp_path / "o")
    assert not (tmp_path / "o" / "decision.json").exists()
    client = MlflowClient()
    for name in (GEN, REST):  # the generation version was promoted, then undone
        assert client.search_model_versions(f"name = '{name}'") == []
        assert champion(name) is None
    assert json.loads(client.get_registered_model(GEN).tags["genpipe.champion_history"]) == []
