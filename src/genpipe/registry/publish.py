"""The register step: decide each task, log the winners as pyfunc models, promote under the lock.

Order matters for "nothing registered half-way": the server is checked first, both models are
logged (run artifacts only, no registry change), and only then are versions created. If the
second task fails, the first task's version and alias move are undone.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from genpipe.config import RegisterConfig
from genpipe.errors import GenpipeError
from genpipe.registry import decision, mlflow_registry
from genpipe.registry.decision import TaskDecision

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RegisterJob:
    report: dict[str, Any]
    model_dirs: dict[str, Path]  # family -> model dir (data/models/vae, data/models/gan)
    config: RegisterConfig

    @property
    def dataset(self) -> str:
        return str(self.report["dataset"])


def model_name(prefix: str, dataset: str, task: str) -> str:
    return f"{prefix}-{dataset}-{task}"


def winner_checkpoint(job: RegisterJob, family: str) -> Path:
    """The file evaluate judged (the GAN's selected snapshot), else the dir's model.pt."""
    entry = job.report.get("models", {}).get(family, {})
    path = (
        Path(entry["checkpoint"])
        if entry.get("checkpoint")
        else job.model_dirs[family] / "model.pt"
    )
    if not path.exists():
        raise GenpipeError(
            f"{path}: the {family} model file named by report.json is missing; rerun training"
        )
    return path


def version_tags(job: RegisterJob, d: TaskDecision, settings: Any) -> dict[str, str]:
    from genpipe.tracking import git_commit

    w = d.winner
    entry = job.report.get("models", {}).get(w.family, {})
    return {
        "genpipe.task": d.task,
        "genpipe.family": w.family,
        "genpipe.method": w.method or "sample",
        "genpipe.metric": d.metric,
        "genpipe.metric_value": repr(w.value),
        "genpipe.metric_ci": "null" if w.ci is None else f"[{w.ci[0]!r}, {w.ci[1]!r}]",
        "genpipe.runner_up": d.runner_up.family,
        "genpipe.margin": repr(d.margin),
        "genpipe.protocol_hash": str(job.report.get("protocol_hash", "")),
        "genpipe.data_hash": str(job.report.get("data_hash", "")),
        "genpipe.git_commit": git_commit(),
        "genpipe.pipeline_run_id": settings.pipeline_run_id or "none",
        "genpipe.train_run_id": str(entry.get("run_id") or ""),
    }


def register_champions(job: RegisterJob) -> dict[str, Any]:
    """Run the whole step against the configured tracking URI; returns the decision record."""
    import mlflow

    from genpipe.models.checkpoint import read_record
    from genpipe.registry.pyfunc import log_pyfunc
    from genpipe.settings import get_settings
    from genpipe.tracking import live_run

    metrics = {
        "generation": job.config.generation_metric,
        "restoration": job.config.restoration_metric,
    }
    decisions = decision.decide_report(job.report, metrics)
    cfg = job.config
    with live_run(
        "register",
        job.dataset,
        params={"register": cfg.model_dump(mode="json")},
        tags={"genpipe.data_hash": job.report.get("data_hash", "")},
    ) as run:
        infos = {}
        for task, d in decisions.items():
            path = winner_checkpoint(job, d.winner.family)
            settings = {"family": d.winner.family}
            if task == "restoration":  # restore as evaluate measured it
                protocol = job.report["protocol"]["evaluate"]
                settings |= {
                    "method": d.winner.method,
                    "seed": protocol["seed"],
                    "latent_search": protocol["latent_search"],
                }
            shape = tuple(read_record(path)["image_shape"])
            infos[task] = log_pyfunc(task, path, settings, shape)
        outcomes: dict[str, mlflow_registry.Outcome] = {}
        try:
            for task, d in decisions.items():
                name = model_name(cfg.model_name_prefix, job.dataset, task)
                tags = version_tags(job, d, get_settings()) | {
                    "genpipe.register_run_id": run.info.run_id
                }
                about = (
                    f"genpipe {task} model on {job.dataset}; alias `champion` is the one to serve."
                )
                version = mlflow_registry.register_version(name, infos[task].model_uri, tags, about)
                outcomes[task] = mlflow_registry.Outcome(name, version, False, "registered", None)
                outcomes[task] = mlflow_registry.promote_if_better(
                    name, version, d.metric, cfg.tie_rule
                )
        except Exception:
            _undo(outcomes)
            raise
        record = build_record(job, decisions, outcomes, run.info.run_id)
        mlflow.log_dict(record, "register/decision.json")
        mlflow.log_text(decision.markdown(record), "register/decision.md")
        mlflow.log_metrics({f"{t}.margin": d.margin for t, d in decisions.items()})
    return record


def _undo(outcomes: dict[str, mlflow_registry.Outcome]) -> None:
    for outcome in outcomes.values():
        try:
            mlflow_registry.undo(outcome)
            log.warning("undid %s v%s after a failure", outcome.name, outcome.version)
        except Exception as exc:  # the registry itself is gone: say what to clean up by hand
            log.error(
                "could not undo %s v%s (%s): delete it in the MLflow UI",
                outcome.name,
                outcome.version,
                exc,
            )


def build_record(
    job: RegisterJob,
    decisions: dict[str, TaskDecision],
    outcomes: dict[str, mlflow_registry.Outcome],
    run_id: str,
) -> dict[str, Any]:
    return {
        "protocol_hash": job.report.get("protocol_hash"),
        "data_hash": job.report.get("data_hash"),
        "register_run_id": run_id,
        "tie_rule": job.config.tie_rule,
        "tasks": {
            t: d.to_dict() | {"registry": outcomes[t].to_dict()} for t, d in decisions.items()
        },
    }
