"""The evaluator classifier trains through the one training loop: deterministic, best-val
weights, and a clear failure below the accuracy floor."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import mlflow
import pytest
import torch
import yaml

from genpipe.models.checkpoint import read_record
from genpipe.stages import train as train_stage
from genpipe.training.run import TrainPaths, train
from genpipe.training.tasks.evaluator import EvaluatorAccuracyError, random_shift
from tests.params import TINY, merge, raw_params, tiny_params


def test_training_learns_digits_and_is_deterministic(
    train_paths: Callable[[str], TrainPaths],
) -> None:
    params = tiny_params({"evaluator": {"epochs": 4, "batch_size": 64}})
    first, second = train_paths("a"), train_paths("b")
    result = train("evaluator", params, first)
    train("evaluator", params, second)
    assert result.exported["test_accuracy"] > 0.85  # 4 epochs; params.yaml's reach ~0.99
    rows = first.plots.read_text().splitlines()
    val = [float(r.split(",")[rows[0].split(",").index("val_accuracy")]) for r in rows[1:]]
    best_epoch = 1 + val.index(max(val))  # the first epoch reaching the best accuracy
    record = read_record(first.out / "model.pt")
    assert record["meta"]["best_epoch"] == best_epoch
    assert round(record["meta"]["val_accuracy"], 6) == max(val)  # the CSV keeps 6 digits
    other = read_record(second.out / "model.pt")["state_dict"]
    assert all(torch.equal(v, other[k]) for k, v in record["state_dict"].items())


def test_below_the_accuracy_floor_nothing_is_written(
    train_paths: Callable[[str], TrainPaths],
) -> None:
    paths = train_paths("run")
    params = tiny_params({"evaluator": {"epochs": 1, "min_test_accuracy": 1.0}})
    with pytest.raises(EvaluatorAccuracyError, match=r"evaluator\.min_test_accuracy"):
        train("evaluator", params, paths)
    assert not (paths.out / "model.pt").exists()


def test_random_shift_moves_whole_images() -> None:
    x = torch.zeros(3, 1, 5, 5)
    x[:, 0, 2, 2] = 1.0
    shifted = random_shift(x, torch.Generator().manual_seed(0))
    assert shifted.shape == x.shape
    assert torch.all(shifted.flatten(1).sum(1) == 1)  # one pixel moved by <= 1, never lost
    centres = shifted[:, 0, 1:4, 1:4].flatten(1).sum(1)
    assert torch.all(centres == 1)


def _argv(params: Path, paths: TrainPaths) -> list[str]:
    return ["--task", "evaluator", "--params", str(params), "--prepared", str(paths.prepared),
            "--out", str(paths.out), "--work", str(paths.work)]  # fmt: skip


def test_stage_fails_clearly_below_the_accuracy_floor(
    tmp_path: Path,
    train_paths: Callable[[str], TrainPaths],
    capsys: pytest.CaptureFixture,
) -> None:
    params = tmp_path / "params.yaml"
    floor = {"evaluator": {"epochs": 1, "min_test_accuracy": 0.9999}}
    params.write_text(yaml.safe_dump(merge(merge(raw_params(), TINY), floor)))
    paths = train_paths("run")
    assert train_stage.main(_argv(params, paths)) == 2
    assert "evaluator.min_test_accuracy" in capsys.readouterr().err
    assert not (paths.out / "model.pt").exists()


@pytest.mark.slow
def test_stage_reaches_the_accuracy_floor_on_digits(
    tmp_path: Path, train_paths: Callable[[str], TrainPaths], capsys: pytest.CaptureFixture
) -> None:
    paths = train_paths("run")
    assert train_stage.main(_argv(tmp_path / "none.yaml", paths)) == 2
    assert "none.yaml: not found" in capsys.readouterr().err  # a clear error, not a traceback
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(raw_params()))  # the shipped evaluator settings
    assert train_stage.main(_argv(params, paths)) == 0
    accuracy = read_record(paths.out / "model.pt")["meta"]["test_accuracy"]
    assert accuracy >= raw_params()["evaluator"]["min_test_accuracy"]
    run = json.loads((paths.out / "run.json").read_text())
    logged = mlflow.get_run(run["run_id"])
    assert logged.data.metrics["test_accuracy"] == pytest.approx(accuracy)
    assert logged.info.run_name == "train_evaluator"
    assert logged.data.tags["genpipe.stage"] == "train_evaluator"
