"""The evaluate stage on tiny real models: report schema, outputs, MLflow runs."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from genpipe.config import EvaluateConfig
from genpipe.models import save_model
from tests.evaluation.conftest import save_tiny_models, write_run_json

TINY = {
    "n_samples": 40,
    "draws": 2,
    "bootstrap": 20,
    "kid_subsets": 2,
    "n_restore": 6,
    "snapshot_selection_samples": 40,
    "latent_search": {"steps": 3, "restarts": 2},
}
METRICS = {
    "fd",
    "kid",
    "precision",
    "recall",
    "density",
    "coverage",
    "is",
    "class_coverage",
    "class_entropy",
}
CORRUPTIONS = {
    "denoise_sigma0.1",
    "denoise_sigma0.3",
    "denoise_sigma0.5",
    "inpaint_center",
    "inpaint_random",
}


def check_stat(stat: dict) -> None:
    assert set(stat) == {"value", "ci"}
    assert isinstance(stat["value"], float)
    assert stat["ci"] is None or (len(stat["ci"]) == 2 and stat["ci"][0] <= stat["ci"][1])


def check_outputs_summary(summary: dict) -> None:
    assert set(summary) == {"mean", "per_corruption"}
    assert set(summary["mean"]) == {"psnr", "ssim"}
    for stat in summary["mean"].values():
        check_stat(stat)
    assert set(summary["per_corruption"]) == CORRUPTIONS
    for name, scores in summary["per_corruption"].items():
        expected = (
            {"psnr", "ssim", "psnr_masked"} if name.startswith("inpaint") else {"psnr", "ssim"}
        )
        assert set(scores) == expected
        for stat in scores.values():
            check_stat(stat)


def check_report_schema(report: dict) -> None:
    """docs/ARCHITECTURE.md, data/eval/report.json: the registry reads exactly these keys."""
    top = {"protocol_hash", "protocol", "data_hash", "evaluator_hash", "models", "generation"}
    assert set(report) == top | {"restoration"}
    assert len(report["protocol_hash"]) == 64 and isinstance(report["protocol"], dict)
    assert set(report["models"]) == {"vae", "gan"}
    assert set(report["models"]["vae"]) == {"checkpoint", "run_id"}
    assert set(report["models"]["gan"]) == {"checkpoint", "run_id", "selected_snapshot"}
    assert set(report["generation"]) == {"vae", "gan", "real"}
    for scores in report["generation"].values():
        assert set(scores) == METRICS
        for stat in scores.values():
            check_stat(stat)
    restoration = report["restoration"]
    assert set(restoration) == {"vae", "gan", "baselines"}
    assert set(restoration["vae"]["methods"]) == {"vae_amortised", "vae_latent_search"}
    assert set(restoration["gan"]["methods"]) == {"gan_latent_search"}
    for model in ("vae", "gan"):
        assert restoration[model]["best_method"] in restoration[model]["methods"]
        for summary in restoration[model]["methods"].values():
            check_outputs_summary(summary)
    assert set(restoration["baselines"]) == {"corrupted", "classical"}
    for summary in restoration["baselines"].values():
        check_outputs_summary(summary)


@pytest.fixture
def models_dir(tmp_path: Path, tiny_vae, tiny_generator, tiny_classifier) -> Path:
    root = tmp_path / "models"
    save_tiny_models(root, tiny_vae, tiny_generator)
    save_model(root / "evaluator" / "model.pt", tiny_classifier, "classifier", n_classes=10)
    return root


def test_evaluation_writes_the_report_and_outputs(
    tmp_path: Path, digits_prepared: Path, models_dir: Path
) -> None:
    from genpipe.evaluation.run import EvaluatePaths, evaluate_models, write_outputs

    for name in ("vae", "gan"):
        write_run_json(models_dir / name, f"run-{name}", "0", "genpipe-digits")
    paths = EvaluatePaths(
        digits_prepared, models_dir / "vae", models_dir / "gan", models_dir / "evaluator",
        tmp_path / "eval", tmp_path / "metrics" / "evaluate.json",
    )  # fmt: skip
    evaluation = evaluate_models(paths, EvaluateConfig.model_validate(TINY))
    write_outputs(evaluation, paths)

    report = json.loads((tmp_path / "eval" / "report.json").read_text())
    check_report_schema(report)
    assert report["models"]["gan"]["selected_snapshot"] in {"epoch_0001", "epoch_0002"}
    assert report["models"]["gan"]["checkpoint"].endswith(
        f"{report['models']['gan']['selected_snapshot']}.pt"
    )
    assert report["models"]["vae"]["run_id"] == "run-vae"
    assert report["protocol"]["n_samples"] == 40 and report["protocol"]["n_restore"] == 6

    flat = json.loads(paths.metrics.read_text())
    assert {"generation.gan.fd", "generation.gan.fd_ci_low", "generation.real.fd"} <= set(flat)
    assert {"restoration.vae.denoise_sigma0.3.psnr", "restoration.vae.mean_psnr"} <= set(flat)
    assert flat.pop("protocol_hash") == report["protocol_hash"]
    assert all(isinstance(v, float) for v in flat.values())

    panels = sorted(p.stem for p in (tmp_path / "eval" / "panels").glob("*.png"))
    assert set(panels) == CORRUPTIONS
    assert {p.stem for p in (tmp_path / "eval" / "samples").glob("*.png")} == {"vae", "gan", "real"}
    with open(tmp_path / "eval" / "plots" / "restoration_psnr.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == len(CORRUPTIONS) * 5

    again = evaluate_models(paths, EvaluateConfig.model_validate(TINY))
    assert again.report == evaluation.report  # same inputs, same numbers, same protocol hash
    changed = evaluate_models(paths, EvaluateConfig.model_validate({**TINY, "seed": 1}))
    assert changed.report["protocol_hash"] != report["protocol_hash"]


def test_missing_run_json_names_the_file(
    tmp_path: Path, digits_prepared: Path, models_dir: Path
) -> None:
    from genpipe.evaluation.run import EvaluateInputError, EvaluatePaths, evaluate_models

    paths = EvaluatePaths(
        digits_prepared, models_dir / "vae", models_dir / "gan", models_dir / "evaluator",
        tmp_path / "eval", tmp_path / "evaluate.json",
    )  # fmt: skip
    with pytest.raises(EvaluateInputError, match=r"vae/run.json: not found"):
        evaluate_models(paths, EvaluateConfig.model_validate(TINY))


@pytest.mark.slow
def test_both_stage_clis_on_tiny_real_models(
    tmp_path: Path, digits_prepared: Path, tiny_vae, tiny_generator
) -> None:
    """train_evaluator then evaluate, as DVC runs them; everything lands in MLflow."""
    import mlflow
    import yaml

    from genpipe.stages import evaluate, train_evaluator
    from genpipe.tracking import tracked_run

    models = tmp_path / "models"
    save_tiny_models(models, tiny_vae, tiny_generator)
    for name in ("vae", "gan"):  # the training runs the evaluation reopens
        with tracked_run("genpipe-digits", f"train_{name}") as run:
            pass
        write_run_json(models / name, run.info.run_id, run.info.experiment_id, "genpipe-digits")
    params = tmp_path / "params.yaml"
    evaluator = {"epochs": 3, "min_test_accuracy": 0.5}
    params.write_text(yaml.safe_dump({"evaluator": evaluator, "evaluate": TINY}))

    common = ["--params", str(params), "--prepared", str(digits_prepared)]
    assert train_evaluator.main(
        [*common, "--out", str(models / "evaluator"), "--metrics", str(tmp_path / "evaluator.json")]
    ) == 0  # fmt: skip
    code = evaluate.main(
        [*common, "--vae", str(models / "vae"), "--gan", str(models / "gan"),
         "--evaluator", str(models / "evaluator"), "--out", str(tmp_path / "eval"),
         "--metrics", str(tmp_path / "evaluate.json")]
    )  # fmt: skip
    assert code == 0
    report = json.loads((tmp_path / "eval" / "report.json").read_text())
    check_report_schema(report)
    flat = json.loads((tmp_path / "evaluate.json").read_text())

    runs = mlflow.search_runs(experiment_names=["genpipe-digits"], output_format="list")
    by_name = {r.info.run_name: r for r in runs}
    assert {"train_evaluator", "evaluate", "train_vae", "train_gan"} <= set(by_name)
    evaluate_run = by_name["evaluate"]
    assert evaluate_run.data.tags["genpipe.protocol_hash"] == report["protocol_hash"]
    assert evaluate_run.data.metrics["generation.gan.fd"] == pytest.approx(
        flat["generation.gan.fd"]
    )
    for name in ("vae", "gan"):
        model_run = mlflow.get_run(report["models"][name]["run_id"])
        assert model_run.data.tags["genpipe.protocol_hash"] == report["protocol_hash"]
        assert f"eval.generation.{name}.fd" in model_run.data.metrics
        artifacts = mlflow.artifacts.list_artifacts(
            run_id=model_run.info.run_id, artifact_path="eval/panels"
        )
        assert {Path(a.path).name for a in artifacts} == {f"{c}.png" for c in CORRUPTIONS}
