"""champions -> decide -> register on the per-test SQLite store, as `dvc repro` runs them: the
registry keeps the best candidate by the decision rule, register is compare-and-set against the
champion the decision saw, a wiped store is refilled once, and a rollback sticks."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
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
from genpipe.evaluation.schema import Incumbent, Incumbents, Report, TaskIncumbent
from genpipe.registry import mlflow_registry
from genpipe.registry.schema import Champions, Decision
from genpipe.stages import champions, decide, register
from tests.params import merge, raw_params
from tests.registry.conftest import metric

GEN, REST = "genpipe-digits-generation", "genpipe-digits-restoration"
KEY = {"generation": "fd", "restoration": "psnr"}


def scored(snapshot: Champions, report: Report, values: dict[str, float]) -> Incumbents:
    """What score_champions writes: each champion with the given number (a champion with a new
    candidate's weights gets that candidate's numbers)."""
    tasks = {}
    for task, held in snapshot.tasks.items():
        c, entry = held.champion, None
        if c is not None:
            same = next(
                (f for f, m in report.models.items() if m.weights_hash == c.weights_hash), None
            )
            scores = {KEY[task]: metric(values[task])} if task in values else {}
            if same is not None and task not in values:
                scores = (
                    report.generation[same]
                    if task == "generation"
                    else report.restoration.family(same).methods[c.method].mean
                )
            entry = Incumbent(
                version=c.version,
                candidate_id=c.candidate_id,
                family=c.family,
                method=c.method,
                weights_hash=c.weights_hash,
                registered_by=c.registered_by,
                scored=bool(scores),
                reason=None if scores else "not scored in this test",
                same_as=same,
                scores=scores,
            )
        tasks[task] = TaskIncumbent(champion=entry, rolled_back=held.rolled_back)
    return Incumbents(protocol_hash=report.protocol_hash, tasks=tasks)


def snapshot_and_decide(
    report: Path,
    out: Path,
    values: dict[str, float] | None = None,
    params_extra: dict | None = None,
) -> Path:
    """The champions, score_champions and decide stages; returns decision.json. The params
    (raw_params, merged with `params_extra`) go to out/../params.yaml."""
    params = out.parent / "params.yaml"
    params.write_text(yaml.safe_dump(merge(raw_params(), params_extra or {})))
    out.mkdir(parents=True, exist_ok=True)
    assert (
        champions.main(
            [
                "--params",
                str(params),
                "--out",
                str(out / "champions.json"),
                "--work",
                str(out / "work"),
            ]
        )
        == 0
    )
    snapshot = Champions.model_validate_json((out / "champions.json").read_text())
    held = scored(snapshot, Report.model_validate_json(report.read_text()), values or {})
    (out / "incumbents.json").write_text(held.model_dump_json())
    argv = ["--params", str(params), "--report", str(report), "--out", str(out)]
    argv += ["--incumbents", str(out / "incumbents.json"), "--metrics", str(out / "metrics.json")]
    assert decide.main(argv) == 0
    return out / "decision.json"


def apply(decision: Path) -> int:
    return register.main(
        ["--decision", str(decision), "--out", str(decision.with_name("applied.json"))]
    )


def run_stage(report: Path, out: Path, values: dict[str, float] | None = None) -> Decision:
    """champions, score_champions, decide and register, as `dvc repro` runs them."""
    decision = snapshot_and_decide(report, out, values)
    assert apply(decision) == 0
    return Decision.model_validate_json(decision.read_text())


def aliases(name: str) -> dict[str, str]:
    return {a: str(v) for a, v in MlflowClient().get_registered_model(name).aliases.items()}


def versions(name: str) -> list[str]:
    return sorted(str(v.version) for v in MlflowClient().search_model_versions(f"name = '{name}'"))


def test_the_registry_keeps_the_best_candidate_and_one_version_each(
    tmp_path: Path, write_report: Callable[..., Path]
) -> None:
    out = tmp_path / "register"
    first_report = write_report(fd={"vae": 12.0, "gan": 8.0}, psnr={"vae": 20.0, "gan": 18.0})
    first = run_stage(first_report, out)
    assert first.tasks["generation"].verdict.winner.family == "gan"
    assert aliases(GEN) == {"champion": "1", "challenger": "1"}
    assert aliases(REST) == {"champion": "1", "challenger": "1"}
    tags = MlflowClient().get_model_version(GEN, "1").tags
    assert tags["genpipe.family"] == "gan" and float(tags["genpipe.metric_value"]) == 8.0
    assert json.loads(tags["genpipe.metric_ci"]) == [7.9, 8.1]
    assert tags["genpipe.protocol_hash"] == "proto-1" and tags["genpipe.git_commit"]
    assert "@" in tags["genpipe.registered_by"] and tags["genpipe.weights_hash"]
    assert "| generation | fd | gan |" in (out / "decision.md").read_text()
    applied = json.loads((out / "applied.json").read_text())
    assert applied["tasks"]["generation"]["registered"] is True

    # the next repro: the snapshot shows this checkout's own champion, the same candidate
    again = run_stage(first_report, out)
    assert again.tasks["generation"].reason == "the champion is the best new candidate itself"
    assert versions(GEN) == ["1"] and versions(REST) == ["1"]

    # a swapped pair: the VAE (FD 6.0) challenges champion v1 (scored 8.0 here) and wins
    swapped = write_report(fd={"vae": 6.0, "gan": 9.0}, psnr={"vae": 20.0, "gan": 18.0})
    second = run_stage(swapped, out, {"generation": 8.0})
    assert second.tasks["generation"].champion == "challenger"
    assert aliases(GEN) == {"champion": "2", "challenger": "2"}
    history = MlflowClient().get_registered_model(GEN).tags[mlflow_registry.HISTORY_TAG]
    assert json.loads(history) == ["1", "2"]

    # back to the first models: champion v2 (FD 6.0) is better than their GAN (8.0): it stays
    back = run_stage(first_report, out, {"generation": 6.0})
    assert back.tasks["generation"].champion == "incumbent"
    assert aliases(GEN) == {"champion": "2", "challenger": "1"}
    assert versions(GEN) == ["1", "2"]  # found by candidate id, not registered again

    runs = mlflow.search_runs(
        experiment_names=["genpipe-digits"], filter_string="attributes.run_name = 'register'"
    )
    assert len(runs) == 2  # a run only when a version was registered
    names = [m.name for m in MlflowClient().search_registered_models()]
    assert sorted(names) == [GEN, REST]  # nothing in the registry that is not a model


def test_a_moved_champion_stops_register_and_names_it(
    tmp_path: Path, write_report: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """A decides against "no champion"; B promotes meanwhile; A's register writes nothing and
    says who holds `champion` now."""
    report_a = write_report(fd={"vae": 12.0, "gan": 8.0}, psnr={"vae": 20.0, "gan": 18.0})
    decision_a = snapshot_and_decide(report_a, tmp_path / "a")
    report_b = write_report(fd={"vae": 6.0, "gan": 9.0}, psnr={"vae": 24.0, "gan": 18.0})
    run_stage(report_b, tmp_path / "b")  # B's VAE takes both titles
    before = {name: versions(name) for name in (GEN, REST)}
    capsys.readouterr()

    assert apply(decision_a) == 2
    err = capsys.readouterr().err
    assert f"{GEN}: the champion moved since this decision was made against no champion" in err
    assert "it is now v1, a vae model registered by" in err
    assert "`dvc repro` re-evaluates against the new champion" in err
    assert {name: versions(name) for name in (GEN, REST)} == before
    assert aliases(GEN)["champion"] == "1"
    assert not (tmp_path / "a" / "applied.json").exists()

    # A's next repro snapshots B's champion, scores it, and keeps it (it is better)
    kept = run_stage(report_a, tmp_path / "a", {"generation": 6.0, "restoration": 24.0})
    assert kept.tasks["generation"].champion == "incumbent"
    assert kept.tasks["generation"].incumbent.version == "1"
    assert aliases(GEN)["champion"] == "1" and versions(GEN) == ["1", "2"]


def test_a_wiped_store_is_refilled_once(
    tmp_path: Path, write_report: Callable[..., Path], isolated_stores: Path
) -> None:
    report = write_report(fd={"vae": 12.0, "gan": 8.0}, psnr={"vae": 20.0, "gan": 18.0})
    out = tmp_path / "register"
    run_stage(report, out)
    before = (out / "champions.json").read_text()
    for gone in ("mlflow.db", "mlflow.db.ready", "artifacts"):  # `rm -rf mlflow/`
        shutil.rmtree(isolated_stores / gone, ignore_errors=True)
        (isolated_stores / gone).unlink(missing_ok=True)
    run_stage(report, out)
    # an empty store reads like the one the first run saw, but it is another store
    assert (out / "champions.json").read_text() != before
    run_stage(report, out)
    assert versions(GEN) == ["1"] and aliases(GEN)["champion"] == "1"
    assert versions(REST) == ["1"] and aliases(REST)["champion"] == "1"


def test_a_rollback_sticks_through_the_next_repro(
    tmp_path: Path, write_report: Callable[..., Path]
) -> None:
    """What the README says: `dvc repro` after a rollback scores the restored champion, and
    does not promote the model rolled back from, even where its numbers are better."""
    out = tmp_path / "register"
    run_stage(write_report(fd={"vae": 12.0, "gan": 8.0}, psnr={"vae": 20.0, "gan": 18.0}), out)
    better = write_report(fd={"vae": 6.0, "gan": 9.0}, psnr={"vae": 20.0, "gan": 18.0})
    run_stage(better, out, {"generation": 8.0})
    assert aliases(GEN)["champion"] == "2"
    runner, params = CliRunner(), str(tmp_path / "params.yaml")
    done = runner.invoke(app, ["registry", "rollback", "generation", "--params", params])
    assert done.exit_code == 0 and "champion v2 -> v1" in done.output

    after = run_stage(better, out, {"generation": 8.0})
    snapshot = Champions.model_validate_json((out / "champions.json").read_text())
    assert snapshot.tasks["generation"].champion.version == "1"
    assert snapshot.tasks["generation"].rolled_back == [
        after.tasks["generation"].challenger.candidate_id
    ]
    assert after.tasks["generation"].champion == "incumbent"
    assert "rolled back" in after.tasks["generation"].reason
    assert aliases(GEN)["champion"] == "1" and versions(GEN) == ["1", "2"]
    last = json.loads(MlflowClient().get_registered_model(GEN).tags["genpipe.last_rollback"])
    assert last["from"] == "2"
    again = runner.invoke(app, ["registry", "rollback", "generation", "--params", params])
    assert again.exit_code == 2 and "no previous champion" in again.output


def test_failure_on_the_second_task_puts_the_first_back(
    tmp_path: Path, write_report: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "register"
    run_stage(write_report(fd={"vae": 12.0, "gan": 8.0}, psnr={"vae": 20.0, "gan": 18.0}), out)
    real = mlflow_registry.point

    def flaky(name: str, *args: object) -> None:
        if name == REST:
            raise ConnectionError("server went away")
        real(name, *args)

    second = write_report(fd={"vae": 6.0, "gan": 9.0}, psnr={"vae": 24.0, "gan": 18.0})
    decision = snapshot_and_decide(second, out, {"generation": 8.0, "restoration": 18.0})
    monkeypatch.setattr(mlflow_registry, "point", flaky)
    with pytest.raises(ConnectionError):
        apply(decision)
    # generation had moved to v2, and was put back: the registry is wholly on the old decision
    assert aliases(GEN) == {"champion": "1", "challenger": "1"}
    monkeypatch.setattr(mlflow_registry, "point", real)
    assert apply(decision) == 0  # the rerun finishes: v2 exists, it is found, not registered again
    assert aliases(GEN)["champion"] == "2" and versions(GEN) == ["1", "2"]


def test_a_held_lock_makes_another_register_wait_then_fail_clearly(tmp_path: Path) -> None:
    from genpipe.registry.lock import lock_file, registry_lock
    from genpipe.tracking import configure_mlflow

    uri = configure_mlflow()
    other = (
        "from genpipe.registry.lock import registry_lock\nwith registry_lock(%r, timeout=1): pass"
    )
    with registry_lock(uri):
        done = subprocess.run(
            [sys.executable, "-c", other % uri],
            capture_output=True,
            text=True,
        )
    assert done.returncode != 0
    assert f"another register or rollback has held {lock_file(uri)}" in done.stderr
    assert lock_file(uri).parent == Path(uri.removeprefix("sqlite:///")).parent


def test_champions_predict_in_python_and_through_the_cli(
    tmp_path: Path, write_report: Callable[..., Path]
) -> None:
    run_stage(
        write_report(fd={"vae": 12.0, "gan": 8.0}, psnr={"vae": 20.0, "gan": 18.0}),
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
    clean = np.asarray(Image.open(tmp_path / "clean.png").convert("L"), dtype=np.float64) / 255
    assert clean.shape == (8, 8)
    np.testing.assert_allclose(
        clean.reshape(-1)[32:], noisy[0, 32:], atol=1 / 255
    )  # observed rows kept
