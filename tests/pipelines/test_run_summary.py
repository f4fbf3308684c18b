"""The run summary is built from the files dvc.yaml names, whatever is present."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from pipelines.dvc_stage import StageResult
from pipelines.run_summary import collect, flatten, render_markdown

HERE = Path(__file__).resolve().parent


def files(dvc_yaml: Path) -> dict[str, dict[str, list[str]]]:
    """Each stage's outs and metrics paths, as StagePlan.files holds them."""
    import yaml

    def paths(entries: list) -> list[str]:
        return [p for e in entries or [] for p in ([e] if isinstance(e, str) else e)]

    stages = yaml.safe_load(dvc_yaml.read_text())["stages"]
    return {n: {k: paths(s.get(k)) for k in ("outs", "metrics")} for n, s in stages.items()}


def test_flatten_names_nested_metrics_like_dvc() -> None:
    nested = {"generation": {"gan": {"fd": 0.5, "ci": [0.4, 0.6]}}, "ok": True}

    assert flatten(nested) == {
        "generation.gan.fd": 0.5,
        "generation.gan.ci": "[0.4, 0.6]",
        "ok": True,
    }


def test_summary_of_a_partial_run(tmp_path: Path) -> None:
    """Only the evaluator has run: its run id appears, the rest is said to be absent."""
    shutil.copy(HERE / "fake_dvc.yaml", tmp_path / "dvc.yaml")
    (tmp_path / "data/models/evaluator").mkdir(parents=True)
    (tmp_path / "data/models/evaluator/run.json").write_text(
        json.dumps({"run_id": "abc123", "experiment_name": "genpipe-digits"})
    )
    results = [StageResult("train_evaluator", "ran", 100.0, 112.5, "")]

    outputs = collect(tmp_path, files(tmp_path / "dvc.yaml"))
    markdown = render_markdown("flow-run-1", results, outputs, ["evaluator.epochs=1"])

    assert outputs.metrics == []
    assert "| train_evaluator | ran | 12.5 |" in markdown
    assert "No metrics files were found." in markdown
    assert "| train_evaluator | abc123 | genpipe-digits |" in markdown
    assert "No stage wrote a decision." in markdown
    assert "`evaluator.epochs=1`" in markdown
    assert "tags.\"genpipe.pipeline_run_id\" = 'flow-run-1'" in markdown


def test_summary_keeps_headlines_and_the_decision(tmp_path: Path) -> None:
    shutil.copy(HERE / "fake_dvc.yaml", tmp_path / "dvc.yaml")
    (tmp_path / "data/register").mkdir(parents=True)
    headline = {"generation": {"winner": "gan", "fd": {"gan": 0.5, "gan_ci_low": 0.4}}}
    (tmp_path / "data/metrics.json").write_text(json.dumps(headline))
    (tmp_path / "data/register/decision.json").write_text(json.dumps({"tasks": {}}))
    (tmp_path / "data/register/decision.md").write_text("gan wins generation\n")

    outputs = collect(tmp_path, files(tmp_path / "dvc.yaml"))
    markdown = render_markdown("run-2", [], outputs)

    assert "| decide | generation.fd.gan | 0.5 |" in markdown
    assert "| decide | generation.winner | gan |" in markdown
    assert "gan_ci_low" not in markdown  # in the table artifact only
    assert "generation.fd.gan_ci_low" in {row["metric"] for row in outputs.metrics}
    assert "gan wins generation" in markdown
