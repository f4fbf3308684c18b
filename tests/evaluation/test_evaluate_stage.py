"""The evaluate stage on tiny real models: report schema, outputs, MLflow runs."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

from genpipe.evaluation.evaluate import evaluate
from genpipe.evaluation.inputs import EvaluateInputError, load_inputs
from genpipe.evaluation.outputs import write_outputs
from genpipe.evaluation.schema import Report
from genpipe.models import save_model
from tests.evaluation.conftest import save_tiny_models, write_run_json
from tests.params import TINY as TINY_PARAMS
from tests.params import merge, raw_params, section

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
    "recognised",
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
    Report.model_validate(report)  # the model the writer and every reader share
    top = {"protocol_hash", "protocol", "dataset", "data_hash", "evaluator_hash", "models"}
    rest = {"evaluator_accuracy", "generation", "reference", "restoration"}
    assert set(report) == top | rest
    assert len(report["protocol_hash"]) == 64 and isinstance(report["protocol"], dict)
    assert set(report["models"]) == {"vae", "gan"}
    assert set(report["models"]["vae"]) == {"checkpoint", "weights_hash", "run_id"}
    assert set(report["models"]["gan"]) == {
        "checkpoint",
        "weights_hash",
        "run_id",
        "selected_snapshot",
    }
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


def _run(models: Path, prepared: Path, config) -> object:
    cpu = torch.device("cpu")
    inputs = load_inputs(prepared, models / "vae", models / "gan", models / "evaluator", cpu)
    return evaluate(inputs, config, cpu)


def test_evaluation_writes_the_report_and_outputs(
    tmp_path: Path, digits_prepared: Path, models_dir: Path
) -> None:
    for name in ("vae", "gan"):
        write_run_json(models_dir / name, f"run-{name}", "0", "genpipe-digits")
    config = section("evaluate", **TINY)
    evaluation = _run(models_dir, digits_prepared, config)
    write_outputs(evaluation, tmp_path / "eval", tmp_path / "plots")

    report = json.loads((tmp_path / "eval" / "report.json").read_text())
    check_report_schema(report)
    assert report["dataset"] == "digits"
    assert report["models"]["gan"]["selected_snapshot"] in {"epoch_0001", "epoch_0002"}
    assert report["models"]["gan"]["checkpoint"].endswith(
        f"{report['models']['gan']['selected_snapshot']}.pt"
    )
    assert report["models"]["vae"]["run_id"] == "run-vae"
    assert report["protocol"]["n_samples"] == 40 and report["protocol"]["n_restore"] == 6

    flat = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert {"generation.gan.fd", "generation.gan.fd_ci_low", "generation.real.fd"} <= set(flat)
    assert {"restoration.vae.denoise_sigma0.3.psnr", "restoration.vae.mean_psnr"} <= set(flat)
    # 8x8 digits: the standard 11x11 SSIM does not fit, so it is absent and the protocol says why
    assert report["protocol"]["ssim"]["ssim_gaussian"].startswith("not scored: the 8x8 images")
    assert not any("ssim_gaussian" in key for key in flat)
    assert report["reference"]["split"] == "test"
    assert flat["generation.reference.recognised"] == report["reference"]["recognised"]
    assert 0 <= flat["generation.reference.recognised"] <= 1
    assert flat.pop("protocol_hash") == report["protocol_hash"]
    assert all(isinstance(v, float) for v in flat.values())

    panels = sorted(p.stem for p in (tmp_path / "eval" / "panels").glob("*.png"))
    assert set(panels) == CORRUPTIONS
    assert {p.stem for p in (tmp_path / "eval" / "samples").glob("*.png")} == {"vae", "gan", "real"}
    with open(tmp_path / "plots" / "restoration_psnr.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == len(CORRUPTIONS) * 5

    again = _run(models_dir, digits_prepared, config)
    assert again.report == evaluation.report  # same inputs, same numbers, same protocol hash
    changed = _run(models_dir, digits_prepared, section("evaluate", **{**TINY, "seed": 1}))
    assert changed.report.protocol_hash != report["protocol_hash"]


def test_a_champion_is_scored_as_the_candidates_were(
    tmp_path: Path, digits_prepared: Path, models_dir: Path
) -> None:
    """score_champions on a champion that is the VAE (its weights unknown, so it is fetched and
    scored): the numbers are the report's own, so decide compares like with like. A champion
    whose weights hash names the GAN reuses the GAN's numbers without a model run."""
    from genpipe.data.dataset import load_prepared
    from genpipe.evaluation.incumbents import score_incumbents
    from genpipe.registry.schema import Champions

    for name in ("vae", "gan"):
        write_run_json(models_dir / name, f"run-{name}", "0", "genpipe-digits")
    config = section("evaluate", **TINY)
    report = _run(models_dir, digits_prepared, config).report
    champion = {"candidate_id": "c", "registered_by": "someone", "source": "models:/m-1"}
    snapshot = Champions.model_validate(
        {
            "store": "1",
            "tasks": {
                "generation": {
                    "model_name": "g",
                    "champion": champion | {"version": "4", "family": "gan", "method": None,
                                            "weights_hash": report.models["gan"].weights_hash},
                    "rolled_back": [],
                },
                "restoration": {
                    "model_name": "r",
                    "champion": champion | {"version": "7", "family": "vae",
                                            "method": "vae_latent_search", "weights_hash": None},
                    "rolled_back": ["x"],
                },
            },
        }
    )  # fmt: skip
    fetched = []

    def fetch(c):
        fetched.append(c.version)
        return models_dir / "vae" / "model.pt"

    cpu = torch.device("cpu")
    evaluator = load_inputs(
        digits_prepared, models_dir / "vae", models_dir / "gan", models_dir / "evaluator", cpu
    ).evaluator.module
    held = score_incumbents(
        report, snapshot, load_prepared(digits_prepared), evaluator, config, cpu, fetch
    )
    gen, rest = held.tasks["generation"].champion, held.tasks["restoration"].champion
    assert gen.same_as == "gan" and gen.scores == report.generation["gan"]
    assert fetched == ["7"]  # only the champion with unknown weights was fetched
    assert rest.scored and rest.weights_hash == report.models["vae"].weights_hash
    assert rest.scores["psnr"].value == pytest.approx(
        report.restoration.vae.methods["vae_latent_search"].mean["psnr"].value
    )
    assert held.tasks["restoration"].rolled_back == ["x"]
    assert held.protocol_hash == report.protocol_hash


def test_missing_run_json_names_the_file(digits_prepared: Path, models_dir: Path) -> None:
    with pytest.raises(EvaluateInputError, match=r"vae/run.json: not found"):
        _run(models_dir, digits_prepared, section("evaluate", **TINY))


def test_more_samples_than_train_images_names_the_key_to_lower(
    digits_prepared: Path, models_dir: Path
) -> None:
    for name in ("vae", "gan"):
        write_run_json(models_dir / name, f"run-{name}", "0", "genpipe-digits")
    config = section("evaluate", **{**TINY, "n_samples": 100000})
    with pytest.raises(
        EvaluateInputError, match=r"evaluate.n_samples=100000 exceeds the \d+ train"
    ):
        _run(models_dir, digits_prepared, config)


def test_a_model_for_other_images_names_the_stage_to_rerun(
    tmp_path: Path, digits_prepared: Path, models_dir: Path
) -> None:
    from genpipe.models.vae import VAE

    for name in ("vae", "gan"):
        write_run_json(models_dir / name, f"run-{name}", "0", "genpipe-digits")
    other = VAE(section("vae", base_channels=8), (1, 28, 28))
    save_model(models_dir / "vae" / "model.pt", other, "vae")
    with pytest.raises(EvaluateInputError, match=r"retrain it \(`dvc repro train_vae`\)"):
        _run(models_dir, digits_prepared, section("evaluate", **TINY))


@pytest.mark.slow
def test_both_stage_clis_on_tiny_real_models(
    tmp_path: Path, digits_prepared: Path, tiny_vae, tiny_generator
) -> None:
    """train_evaluator then evaluate, as DVC runs them; both land in MLflow with real times."""
    import mlflow
    import yaml

    from genpipe.stages import evaluate as evaluate_stage
    from genpipe.stages import train as train_stage

    models = tmp_path / "models"
    save_tiny_models(models, tiny_vae, tiny_generator)
    for name in ("vae", "gan"):
        write_run_json(models / name, f"run-{name}", "0", "genpipe-digits")
    params = tmp_path / "params.yaml"
    update = {"evaluator": {"epochs": 3, "min_test_accuracy": 0.5}, "evaluate": TINY}
    params.write_text(yaml.safe_dump(merge(merge(raw_params(), TINY_PARAMS), update)))

    common = ["--params", str(params), "--prepared", str(digits_prepared)]
    assert train_stage.main(
        [*common, "--task", "evaluator", "--out", str(models / "evaluator"),
         "--work", str(tmp_path / "work"), "--plots", str(tmp_path / "evaluator.csv")]
    ) == 0  # fmt: skip
    code = evaluate_stage.main(
        [*common, "--vae", str(models / "vae"), "--gan", str(models / "gan"),
         "--evaluator", str(models / "evaluator"), "--out", str(tmp_path / "eval"),
         "--plots", str(tmp_path / "plots")]
    )  # fmt: skip
    assert code == 0
    report = json.loads((tmp_path / "eval" / "report.json").read_text())
    check_report_schema(report)
    flat = json.loads((tmp_path / "eval" / "metrics.json").read_text())

    runs = mlflow.search_runs(experiment_names=["genpipe-digits"], output_format="list")
    by_name = {r.info.run_name: r for r in runs}
    assert {"train_evaluator", "evaluate"} <= set(by_name)
    evaluate_run = by_name["evaluate"]
    assert evaluate_run.info.status == "FINISHED"
    assert evaluate_run.data.tags["genpipe.protocol_hash"] == report["protocol_hash"]
    assert evaluate_run.data.tags["genpipe.train_run_id.vae"] == "run-vae"
    (used,) = evaluate_run.inputs.dataset_inputs  # lineage: the prepared data it saw
    assert used.dataset.name == "digits" and used.dataset.source_type == "local"
    assert {t.key: t.value for t in used.tags}["genpipe.data_hash"] == report["data_hash"]
    assert evaluate_run.data.metrics["generation.gan.fd"] == pytest.approx(
        flat["generation.gan.fd"]
    )
    # the run's duration is the stage's: it covers the generation and restoration phases
    seconds = evaluate_run.data.metrics
    took = (evaluate_run.info.end_time - evaluate_run.info.start_time) / 1000
    assert took >= seconds["seconds.generation"] + seconds["seconds.restoration"]
    artifacts = mlflow.artifacts.list_artifacts(
        run_id=evaluate_run.info.run_id, artifact_path="panels"
    )
    assert {Path(a.path).name for a in artifacts} == {f"{c}.png" for c in CORRUPTIONS}
