"""The run's summary artifacts, from the files dvc.yaml names: each stage's metrics, the MLflow
run (`run.json`) in its output folders, its markdown outputs (the decision). Names no stage."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipelines.dvc_stage import StageResult


@dataclass(frozen=True)
class PipelineOutputs:
    metrics: list[dict[str, Any]] = field(default_factory=list)  # rows: stage, file, metric, value
    runs: list[tuple[str, str, str]] = field(default_factory=list)  # stage, run id, experiment
    decisions: list[str] = field(default_factory=list)  # the markdown outputs


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """Nested JSON -> {"a.b.c": scalar}, the way `dvc metrics show` names nested metrics."""
    if isinstance(data, Mapping):
        return {
            k: v for key, value in data.items()
            for k, v in flatten(value, f"{prefix}.{key}" if prefix else str(key)).items()
        }  # fmt: skip
    if isinstance(data, list):
        return {prefix: json.dumps(data)} if prefix else {}
    return {prefix: data}


def collect(project: Path, stages: Mapping[str, Mapping[str, Sequence[str]]]) -> PipelineOutputs:
    """What the stages wrote, where present; `stages`: their outs and metrics (StagePlan.files)."""
    out = PipelineOutputs()
    for name, stage in stages.items():
        for rel in stage.get("metrics", ()):
            if rel.endswith(".json") and (project / rel).is_file():
                flat = flatten(json.loads((project / rel).read_text()))
                out.metrics.extend({"stage": name, "file": rel, "metric": m, "value": v}
                                   for m, v in flat.items())  # fmt: skip
        for rel in stage.get("outs", ()):
            if (run_file := project / rel / "run.json").is_file():
                info = json.loads(run_file.read_text())
                out.runs.append((name, info.get("run_id", "?"), info.get("experiment_name", "?")))
            if rel.endswith(".md") and (project / rel).is_file():
                out.decisions.append((project / rel).read_text().strip())
    return out


def _table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    def cell(value: Any) -> str:
        return f"{value:.4g}" if isinstance(value, float) else str(value).replace("|", "\\|")

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(map(cell, row)) + " |" for row in rows])


def _outcome(result: StageResult) -> str:
    if not result.dvc_started:
        return f"{result.outcome} (up to date before the run; DVC not asked again)"
    return f"{result.outcome} on {result.host}" if result.host else result.outcome


def render_markdown(
    run_id: str,
    results: Sequence[StageResult],
    outputs: PipelineOutputs,
    overrides: Sequence[str] = (),
) -> str:
    """The run's summary: what happened per stage, the metrics, the decisions, the MLflow runs."""
    # the headlines: CI bounds stay in the table artifact
    shown = [m for m in outputs.metrics if not m["metric"].endswith(("_ci_low", "_ci_high"))]
    parts = [
        f"# genpipe pipeline run `{run_id}`",
        "Overrides applied to params.yaml: " + ", ".join(f"`{o}`" for o in overrides)
        if overrides else "No parameter overrides.",
        "## Stages",
        _table(["stage", "DVC", "seconds"], ((r.stage, _outcome(r), r.seconds) for r in results)),
        "## Metrics",
        _table(["stage", "metric", "value"], ((m["stage"], m["metric"], m["value"]) for m in shown))
        + "\n\nEvery metric, CI bounds included, is in the `genpipe-metrics` table artifact."
        if shown else "No metrics files were found.",
        "## Promotion decisions",
        "\n\n".join(outputs.decisions) or "No stage wrote a decision.",
        "## MLflow runs",
        _table(["stage", "run id", "experiment"], outputs.runs)
        if outputs.runs else "No stage recorded an MLflow run.",
        f"Runs of this pipeline run carry the tag `genpipe.pipeline_run_id = {run_id}` (MLflow "
        f"search: `tags.\"genpipe.pipeline_run_id\" = '{run_id}'`). Skipped stages keep the run "
        "ids of the pipeline run that last built them.",
    ]  # fmt: skip
    return "\n\n".join(parts) + "\n"
