"""score_val: one family scored on the validation split only, as tuning compares families."""

from __future__ import annotations

import json
from pathlib import Path

import torch
import yaml

from genpipe.evaluation.val_score import flat_val_metrics, score_on_val
from genpipe.models import save_model
from genpipe.models.gan import Generator
from genpipe.stages import score_val
from tests.evaluation.conftest import save_tiny_models, write_run_json
from tests.params import merge, raw_params, section

TINY = {
    "n_samples": 40,
    "draws": 2,
    "bootstrap": 20,
    "kid_subsets": 2,
    "snapshot_selection_samples": 40,
}


def test_a_gan_is_scored_at_its_best_snapshot_on_val(
    tiny_generator: Generator, tiny_classifier, digits_test: torch.Tensor
) -> None:
    config = section("evaluate", **TINY)
    snapshots = {"epoch_0001": tiny_generator, "epoch_0002": tiny_generator}
    score = score_on_val(snapshots, tiny_classifier, digits_test, config)
    assert score.selected == "epoch_0002"  # a tie goes to the later snapshot, as evaluate picks
    assert set(score.snapshot_fds) == set(snapshots)
    fd = score.generation["fd"]
    assert fd["value"] > 0 and fd["ci"][0] <= fd["value"] <= fd["ci"][1]
    flat = flat_val_metrics("gan", score)["val"]["gan"]
    assert flat["fd"] == round(fd["value"], 4) and flat["snapshot"] == "epoch_0002"
    assert set(flat["snapshot_fd"]) == set(snapshots)


def test_the_stage_writes_the_metrics_dvc_exp_show_reads(
    tmp_path: Path, digits_prepared: Path, tiny_vae, tiny_generator, tiny_classifier, monkeypatch
) -> None:
    models = tmp_path / "models"
    save_tiny_models(models, tiny_vae, tiny_generator)
    save_model(models / "evaluator" / "model.pt", tiny_classifier, "classifier", n_classes=10)
    write_run_json(models / "vae", "run-vae", "0", "genpipe-digits")
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(merge(raw_params(), {"evaluate": TINY})))
    out = tmp_path / "val" / "vae.json"
    argv = ["--params", str(params), "--family", "vae", "--prepared", str(digits_prepared)]
    argv += ["--model", str(models / "vae"), "--evaluator", str(models / "evaluator")]
    assert score_val.main([*argv, "--metrics", str(out)]) == 0
    metrics = json.loads(out.read_text())
    assert set(metrics) == {"val"} and set(metrics["val"]) == {"vae"}
    assert {"fd", "fd_ci_low", "fd_ci_high", "recognised"} <= set(metrics["val"]["vae"])

    wrong = ["--params", str(params), "--family", "gan", "--prepared", str(digits_prepared)]
    wrong += ["--model", str(models / "vae"), "--evaluator", str(models / "evaluator")]
    assert score_val.main([*wrong, "--metrics", str(out)]) == 2  # a VAE file is not a generator
