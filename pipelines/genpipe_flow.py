"""The genpipe Prefect flow: run the DVC stages in order, then publish what they produced.

The flow only wires. Each task runs one stage through `dvc repro` (see pipelines.dvc_runner), so
DVC's lock file decides what is skipped and nothing here knows about models or metrics beyond
reading the files dvc.yaml names.

- Parameter overrides (`overrides=["vae.epochs=2"]`, or a dict) are written into params.yaml the
  way `dvc exp run -S` writes them, after validation by genpipe.config.Params; see
  pipelines.params_overrides for why this beats a separate overrides file. Switching dataset is an
  override like any other: `data.dataset=mnist`, `data.download.mirrors=[http://host/mnist/]`.
- The Prefect flow-run id is the pipeline run id: every stage gets it as GENPIPE_PIPELINE_RUN_ID
  and tags its MLflow run `genpipe.pipeline_run_id` with it.
- download alone retries, with exponential backoff; every stage has a timeout (stage_timeouts).
- A failed validate fails the flow with ValidationFailed before any training starts.
- train_vae, train_gan and train_evaluator read the same inputs and write disjoint outputs; DVC
  releases its repo lock while a stage command runs, so they run as concurrent tasks. They share
  the CPU cores evenly (OMP_NUM_THREADS, see dvc_runner.shared_cpu_env) instead of each starting
  one thread per core.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.futures import wait

from genpipe.config import load_params
from genpipe.errors import GenpipeError
from genpipe.settings import project_root
from pipelines import dvc_runner, params_overrides, run_summary
from pipelines.dvc_runner import StageFailed, StageResult

log = logging.getLogger(__name__)

FLOW_NAME = "genpipe-pipeline"
STAGES = (
    "download",
    "prepare",
    "validate",
    "train_vae",
    "train_gan",
    "train_evaluator",
    "evaluate",
    "register",
)
CONCURRENT_TRAINING = ("train_vae", "train_gan", "train_evaluator")
HOUR = 3600.0
DEFAULT_TIMEOUTS: dict[str, float] = {
    "download": 0.5 * HOUR,
    "prepare": 0.5 * HOUR,
    "validate": 0.5 * HOUR,
    "train_vae": 6 * HOUR,
    "train_gan": 6 * HOUR,
    "train_evaluator": 2 * HOUR,
    "evaluate": 6 * HOUR,
    "register": 0.5 * HOUR,
}


class ValidationFailed(GenpipeError):
    """The validate stage rejected the data; no stage after it ran."""


@task(task_run_name="dvc repro {stage}", cache_policy=NO_CACHE)
def repro_stage(
    project: Path,
    stage: str,
    run_id: str,
    timeout_seconds: float,
    extra_env: dict[str, str] | None = None,
) -> StageResult:
    """One DVC stage; DVC's own output goes to the task log so the UI shows what DVC did."""
    logger = get_run_logger()
    env = {"GENPIPE_PIPELINE_RUN_ID": run_id, **(extra_env or {})}
    try:
        result = dvc_runner.run_stage(project, stage, env, timeout_seconds)
    except StageFailed as exc:
        logger.error("%s", exc.output or exc)
        raise
    logger.info(
        "DVC %s stage %s in %.1f s\n%s", result.outcome, stage, result.seconds, result.output
    )
    return result


@task(cache_policy=NO_CACHE)
def apply_param_overrides(
    project: Path, requested: Sequence[str] | Mapping[str, Any] | None
) -> list[str]:
    """Validate params.yaml (with overrides) through genpipe.config before any stage runs."""
    applied = params_overrides.apply_overrides(project / "params.yaml", requested)
    load_params(project / "params.yaml")
    return applied


@task(cache_policy=NO_CACHE)
def publish_summary(
    project: Path, run_id: str, results: list[StageResult], applied: list[str]
) -> str:
    """The markdown summary and the metrics table, as Prefect artifacts of this flow run."""
    outputs = run_summary.collect(project)
    markdown = run_summary.render_markdown(run_id, results, outputs, applied)
    create_markdown_artifact(
        markdown, key="genpipe-summary", description="genpipe pipeline run summary"
    )
    rows = run_summary.metrics_table(outputs)
    if rows:
        create_table_artifact(rows, key="genpipe-metrics", description="metrics of the DVC stages")
    return markdown


def _timeouts(requested: Mapping[str, float] | None) -> dict[str, float]:
    unknown = sorted(set(requested or {}) - set(STAGES))
    if unknown:
        raise GenpipeError(
            f"stage_timeouts names unknown stages {unknown}; stages are {list(STAGES)}"
        )
    return {**DEFAULT_TIMEOUTS, **(requested or {})}


@flow(name=FLOW_NAME, log_prints=True)
def genpipe_pipeline(
    overrides: list[str] | dict[str, Any] | None = None,
    project_dir: str | None = None,
    stage_timeouts: dict[str, float] | None = None,
    download_retries: int = 3,
    download_retry_delay_seconds: float = 10.0,
) -> dict[str, Any]:
    """download, prepare, validate, then the three trainings at once, then evaluate, register."""
    from prefect.runtime import flow_run

    project = Path(project_dir).resolve() if project_dir else project_root()
    timeouts = _timeouts(stage_timeouts)
    run_id = str(flow_run.id)
    applied = apply_param_overrides(project, overrides)

    def run(stage: str) -> StageResult:
        return repro_stage(project, stage, run_id, timeouts[stage])

    delays = [download_retry_delay_seconds * 2**i for i in range(download_retries)]
    download = repro_stage.with_options(retries=download_retries, retry_delay_seconds=delays or 0)
    results = [download(project, "download", run_id, timeouts["download"]), run("prepare")]
    try:
        results.append(run("validate"))
    except StageFailed as exc:
        raise ValidationFailed(
            f"data validation failed, so no later stage ran (pipeline run {run_id}). Read "
            "data/validation/summary.json and the Data Docs in data/validation/docs, fix the data "
            f"or the validate params, and run again.\n{exc}"
        ) from None

    shared = dvc_runner.shared_cpu_env(
        len(CONCURRENT_TRAINING), dvc_runner.usable_cores(), os.environ
    )
    futures = [
        repro_stage.submit(project, s, run_id, timeouts[s], shared) for s in CONCURRENT_TRAINING
    ]
    wait(futures)
    results += [f.result() for f in futures]  # raises the first failure, after all have ended
    results += [run("evaluate"), run("register")]

    publish_summary(project, run_id, results, applied)
    return {
        "pipeline_run_id": run_id,
        "overrides": applied,
        "stages": {
            r.stage: {"outcome": r.outcome, "started": r.started, "finished": r.finished}
            for r in results
        },
    }


def read_preset(path: str) -> list[str]:
    """A preset is a YAML list of `key=value` overrides, the same grammar as -S."""
    import yaml

    try:
        items = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise GenpipeError(f"preset {path}: unreadable ({exc})") from None
    if not isinstance(items, list) or not all(isinstance(i, str) and "=" in i for i in items):
        raise GenpipeError(f"preset {path}: expected a YAML list of 'key=value' strings")
    return items


def main(argv: list[str] | None = None) -> int:
    """`python -m pipelines.genpipe_flow [-S key=value ...]`: one local run of the flow."""
    p = argparse.ArgumentParser(description=main.__doc__)
    p.add_argument(
        "-S",
        "--set-param",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a params.yaml value, as `dvc exp run -S` (repeatable)",
    )
    p.add_argument(
        "--preset",
        default=None,
        metavar="FILE",
        help="YAML list of KEY=VALUE overrides applied before any -S (e.g. params/mnist.yaml)",
    )
    p.add_argument(
        "--project", default=None, help="project folder (default: the one holding dvc.yaml)"
    )
    args = p.parse_args(argv)
    if args.preset:
        try:
            preset = read_preset(args.preset)
        except GenpipeError as exc:
            print(f"genpipe pipeline: error: {exc}", file=sys.stderr)
            return 2
        args.overrides = [*preset, *args.overrides]
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        result = genpipe_pipeline(overrides=args.overrides or None, project_dir=args.project)
    except GenpipeError as exc:
        print(f"genpipe pipeline: error: {exc}", file=sys.stderr)
        return 2
    outcomes = ", ".join(f"{s}={v['outcome']}" for s, v in result["stages"].items())
    print(f"pipeline run {result['pipeline_run_id']}: {outcomes}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
