"""Log an evaluation to MLflow: an `evaluate` run with everything, and into each model's run.

Each model's training run gets its own numbers (prefixed `eval.`), its panels and the protocol
hash as a tag, so the run the registry promotes carries how it was judged.
"""

from __future__ import annotations

import logging
from pathlib import Path

from genpipe.config import EvaluateConfig
from genpipe.evaluation.run import EvaluatePaths, Evaluation
from genpipe.tracking import tracked_run

log = logging.getLogger(__name__)


def model_metrics(flat: dict[str, float], model: str) -> dict[str, float]:
    """This model's keys (plus the real floor, to read them against), prefixed `eval.`."""
    keep = (
        f"generation.{model}.",
        "generation.real.",
        f"restoration.{model}.",
        "restoration.baseline.",
    )
    if model == "gan":
        keep += ("selection.gan.",)
    return {f"eval.{k}": v for k, v in flat.items() if k.startswith(keep)}


def _run_exists(run_id: str) -> bool:
    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        mlflow.tracking.MlflowClient().get_run(run_id)
    except MlflowException:
        return False
    return True


def log_evaluation(
    evaluation: Evaluation, paths: EvaluatePaths, config: EvaluateConfig, experiment: str
) -> str:
    """Returns the evaluate run's id."""
    import mlflow

    report = evaluation.report
    tags = {
        "genpipe.stage": "evaluate",
        "genpipe.data_hash": report["data_hash"],
        "genpipe.protocol_hash": report["protocol_hash"],
        "genpipe.evaluator_hash": report["evaluator_hash"],
    }
    with tracked_run(
        experiment, "evaluate", params={"evaluate": config.model_dump(mode="json")}, tags=tags
    ) as run:
        mlflow.log_metrics(evaluation.flat)
        mlflow.log_metrics({f"seconds.{k}": v for k, v in evaluation.seconds.items()})
        mlflow.log_artifact(str(paths.out / "report.json"))
        for folder in ("panels", "samples", "plots"):
            if (paths.out / folder).is_dir():
                mlflow.log_artifacts(str(paths.out / folder), artifact_path=folder)
        eval_run_id = run.info.run_id

    for model in ("vae", "gan"):
        run_id = report["models"][model]["run_id"]
        if not run_id or not _run_exists(run_id):
            log.warning("%s: no MLflow run to log into (run_id %r)", model, run_id)
            continue
        model_tags = {
            "genpipe.protocol_hash": report["protocol_hash"],
            "genpipe.evaluate_run_id": eval_run_id,
        }
        with tracked_run(experiment, "evaluate", tags=model_tags, run_id=run_id):
            mlflow.log_metrics(model_metrics(evaluation.flat, model))
            mlflow.log_dict(report["generation"][model], f"eval/generation_{model}.json")
            mlflow.log_dict(report["restoration"].get(model, {}), f"eval/restoration_{model}.json")
            mlflow.log_artifacts(str(paths.out / "panels"), artifact_path="eval/panels")
            sample_grid = Path(paths.out / "samples" / f"{model}.png")
            if sample_grid.exists():
                mlflow.log_artifact(str(sample_grid), artifact_path="eval/samples")
    return eval_run_id
