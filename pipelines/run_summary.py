"""What a pipeline run leaves behind, gathered from the files dvc.yaml names, as Prefect artifacts.

Everything here is pure except `collect`, which only reads files: the metrics files each stage
declares, the `run.json` (MLflow run) in each output folder, and the decide stage's markdown
decision. Paths come from dvc.yaml, so a renamed output needs no change here.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pipelines.dvc_stage import StageResult

log = logging.getLogger(__name__)

DECISION_STAGE = "decide"


@dataclass(frozen=True)
class RunRecord:
    stage: str
    run_id: str
    experiment: str


@dataclass(frozen=True)
class PipelineOutputs:
    metrics: list[dict[str, Any]] = field(default_factory=list)  # rows: file, metric, value
    runs: list[RunRecord] = field(default_factory=list)
    decisions: str = ""


def _paths(entries: Iterable[Any]) -> list[str]:
    """dvc.yaml outs/metrics entries are either `path` or `{path: {options}}`."""
    out: list[str] = []
    for entry in entries or []:
        out.extend([entry] if isinstance(entry, str) else list(entry))
    return out


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """Nested JSON -> {"a.b.c": scalar}, the way `dvc metrics show` names nested metrics."""
    if isinstance(data, Mapping):
        flat: dict[str, Any] = {}
        for key, value in data.items():
            flat.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
        return flat
    if isinstance(data, list):
        return {prefix: json.dumps(data)} if prefix else {}
    return {prefix: data}


def collect(
    project: Path, stages: Mapping[str, Mapping[str, Any]] | None = None
) -> PipelineOutputs:
    """Read the metrics, MLflow run ids and promotion decisions the stages wrote, if present.

    `stages` maps each stage to its `metrics` and `outs` paths as DVC resolved them (the flow's
    plan has them; foreach/matrix stages expanded). Without it, dvc.yaml is read as written.
    """
    if stages is None:
        stages = (yaml.safe_load((project / "dvc.yaml").read_text()) or {}).get("stages", {})
    metrics: list[dict[str, Any]] = []
    runs: list[RunRecord] = []
    decisions: list[str] = []
    for name, stage in stages.items():
        for rel in _paths(stage.get("metrics")):
            path = project / rel
            if path.suffix == ".json" and path.is_file():
                for metric, value in flatten(json.loads(path.read_text())).items():
                    metrics.append({"stage": name, "file": rel, "metric": metric, "value": value})
        for rel in _paths(stage.get("outs")):
            run_file = project / rel / "run.json"
            if run_file.is_file():
                info = json.loads(run_file.read_text())
                runs.append(
                    RunRecord(name, info.get("run_id", "?"), info.get("experiment_name", "?"))
                )
            if name == DECISION_STAGE and rel.endswith(".md") and (project / rel).is_file():
                decisions.append((project / rel).read_text().strip())
    runs += [
        RunRecord(m["stage"], str(m["value"]), "")
        for m in metrics
        if m["metric"].endswith("run_id") and m["value"]
    ]
    return PipelineOutputs(metrics, runs, "\n\n".join(decisions))


def headline(outputs: PipelineOutputs) -> list[dict[str, Any]]:
    """Metrics worth reading in the summary: no CI bounds, no copy of the decision's fields.

    The table artifact keeps every row; the decision already has its own section.
    """
    return [m for m in outputs.metrics if not m["metric"].endswith(("_ci_low", "_ci_high"))]


def _outcome(result: StageResult) -> str:
    if not result.dvc_started:
        return f"{result.outcome} (up to date before the run; DVC not asked again)"
    return f"{result.outcome} on {result.host}" if result.host else result.outcome


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value).replace("|", "\\|")


def _table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def render_markdown(
    run_id: str,
    results: Sequence[StageResult],
    outputs: PipelineOutputs,
    overrides: Sequence[str] = (),
) -> str:
    """The run's summary: what DVC did per stage, the metrics, the decisions, the MLflow runs."""
    parts = [f"# genpipe pipeline run `{run_id}`"]
    parts.append(
        "Overrides applied to params.yaml: " + ", ".join(f"`{o}`" for o in overrides)
        if overrides
        else "No parameter overrides."
    )
    parts += [
        "## Stages",
        _table(["stage", "DVC", "seconds"], ((r.stage, _outcome(r), r.seconds) for r in results)),
    ]
    parts.append("## Metrics")
    shown = headline(outputs)
    if shown:
        parts.append(
            _table(
                ["stage", "metric", "value"], ((m["stage"], m["metric"], m["value"]) for m in shown)
            )
        )
        parts.append(
            "Every metric, CI bounds included, is in the `genpipe-metrics` table artifact."
        )
    else:
        parts.append("No metrics files were found.")
    parts += [
        "## Promotion decisions",
        outputs.decisions or f"The {DECISION_STAGE} stage wrote no decision.",
    ]
    parts.append("## MLflow runs")
    if outputs.runs:
        parts.append(
            _table(
                ["stage", "run id", "experiment"],
                ((r.stage, r.run_id, r.experiment) for r in outputs.runs),
            )
        )
    else:
        parts.append("No stage recorded an MLflow run.")
    parts.append(
        "Runs of this pipeline run carry the tag "
        f"`genpipe.pipeline_run_id = {run_id}` (MLflow search: "
        f"`tags.\"genpipe.pipeline_run_id\" = '{run_id}'`). Skipped stages keep the run ids of "
        "the pipeline run that last built them."
    )
    return "\n\n".join(parts) + "\n"


def metrics_table(outputs: PipelineOutputs) -> list[dict[str, Any]]:
    """Rows for Prefect's table artifact (values as JSON-safe scalars)."""
    return [
        {
            **row,
            "value": row["value"]
            if isinstance(row["value"], int | float | str | bool)
            else str(row["value"]),
        }
        for row in outputs.metrics
    ]
