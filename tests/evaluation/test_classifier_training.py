from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from genpipe.config import EvaluatorConfig
from genpipe.data.dataset import load_prepared
from genpipe.stages import train_evaluator
from genpipe.training.classifier import (
    EvaluatorAccuracyError,
    check_accuracy,
    random_shift,
    train_classifier,
)


def test_training_learns_digits_and_is_deterministic(digits_prepared: Path) -> None:
    data = load_prepared(digits_prepared)
    config = EvaluatorConfig(epochs=4, batch_size=64)
    first = train_classifier(data, config)
    second = train_classifier(data, config)
    assert first.test_accuracy > 0.85  # 4 epochs; the default 30 reach ~0.99 (slow test)
    assert len(first.history) == 4 and 1 <= first.best_epoch <= 4
    same = first.model.state_dict()
    assert all(torch.equal(v, second.model.state_dict()[k]) for k, v in same.items())
    with pytest.raises(EvaluatorAccuracyError, match=r"evaluator\.min_test_accuracy"):
        check_accuracy(first, EvaluatorConfig(min_test_accuracy=1.0))


def test_random_shift_moves_whole_images() -> None:
    x = torch.zeros(3, 1, 5, 5)
    x[:, 0, 2, 2] = 1.0
    shifted = random_shift(x, torch.Generator().manual_seed(0))
    assert shifted.shape == x.shape
    assert torch.all(shifted.flatten(1).sum(1) == 1)  # one pixel moved by <= 1, never lost
    centres = shifted[:, 0, 1:4, 1:4].flatten(1).sum(1)
    assert torch.all(centres == 1)


def test_stage_fails_clearly_below_the_accuracy_floor(
    tmp_path: Path, digits_prepared: Path, capsys: pytest.CaptureFixture
) -> None:
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"evaluator": {"epochs": 1, "min_test_accuracy": 0.9999}}))
    out = tmp_path / "evaluator"
    code = train_evaluator.main(
        ["--params", str(params), "--prepared", str(digits_prepared), "--out", str(out),
         "--metrics", str(tmp_path / "evaluator.json")]
    )  # fmt: skip
    assert code == 2
    assert "evaluator.min_test_accuracy" in capsys.readouterr().err
    assert not (out / "model.pt").exists() and not (tmp_path / "evaluator.json").exists()


@pytest.mark.slow
def test_stage_reaches_the_accuracy_floor_on_digits(tmp_path: Path, digits_prepared: Path) -> None:
    import mlflow

    out, metrics = tmp_path / "evaluator", tmp_path / "evaluator.json"
    code = train_evaluator.main(
        ["--params", str(tmp_path / "none.yaml"), "--prepared", str(digits_prepared),
         "--out", str(out), "--metrics", str(metrics)]
    )  # fmt: skip
    assert code == 2  # a missing params file is a clear error, not a traceback
    (tmp_path / "params.yaml").write_text("evaluator: {}\n")
    code = train_evaluator.main(
        ["--params", str(tmp_path / "params.yaml"), "--prepared", str(digits_prepared),
         "--out", str(out), "--metrics", str(metrics)]
    )  # fmt: skip
    assert code == 0
    accuracy = json.loads(metrics.read_text())["test_accuracy"]
    assert accuracy >= 0.97
    run = json.loads((out / "run.json").read_text())
    logged = mlflow.get_run(run["run_id"])
    assert logged.data.metrics["test_accuracy"] == pytest.approx(accuracy)
    assert logged.info.run_name == "train_evaluator"
    assert logged.data.tags["genpipe.stage"] == "train_evaluator"
