"""The genpipe Prefect flow: run dvc.yaml's stale stages, then publish what they produced.

The flow only wires, and keeps no list of stages: the graph comes from dvc.yaml, and DVC decides
what is stale (pipelines.dvc_plan), once, before any stage runs.

- Parameter overrides (`overrides=["vae.epochs=2"]`, or a dict) are written into params.yaml the
  way `dvc exp run -S` writes them, after validation by genpipe.config.Params; see
  pipelines.params_overrides for why this beats a separate overrides file.
- Every stage is a task. A stage that was up to date, with every upstream stage skipped too,
  ends in the Completed state "Skipped" without starting DVC. Any other stage runs
  `dvc repro --single-item <stage>` in its own process (pipelines.dvc_runner), so DVC still
  decides: a stage made stale by an upstream rerun runs, one whose inputs came out the same is
  skipped, one found in DVC's run-cache ends "Cached".
- A stage starts as soon as the stages it depends on are done, so independent stages (the
  trainings) run at once and split the CPU cores between them (genpipe.cpu, GENPIPE_CPU_SHARE).
- The Prefect flow-run id is the pipeline run id: every stage gets it as GENPIPE_PIPELINE_RUN_ID
  and tags its MLflow run `genpipe.pipeline_run_id` with it.
- The download stage retries, with exponential backoff; every stage has a timeout.
- A failed validate fails the flow with ValidationFailed; no stage after it starts.
- With dispatch on (`orchestration.dispatch` in params.yaml, flow parameter `dispatch`,
  `python -m pipelines --dispatch`), each stage runs on a worker of its work pool
  (`orchestration.pools`) and its data moves through the DVC remote: pipelines/dispatch.py.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.futures import PrefectFuture, wait
from prefect.states import Completed, State

from genpipe import cpu
from genpipe.errors import GenpipeError
from genpipe.settings import project_root
from pipelines import dvc_runner, run_summary
from pipelines.dvc_plan import DvcSide, StagePlan
from pipelines.dvc_runner import StageFailed, StageResult

log = logging.getLogger(__name__)

FLOW_NAME = "genpipe-pipeline"
VALIDATION_STAGE = "validate"  # its failure stops the flow before training, as ValidationFailed
RETRIED_STAGES = ("download",)  # the only stage that touches the network
HOUR = 3600.0
DEFAULT_TIMEOUT = 6 * HOUR
DEFAULT_TIMEOUTS: dict[str, float] = {
    "download": 0.5 * HOUR,
    "prepare": 0.5 * HOUR,
    "validate": 0.5 * HOUR,
    "train_evaluator": 2 * HOUR,
    "register": 0.5 * HOUR,
}  # any other stage: DEFAULT_TIMEOUT
# Prefect state names of a stage that did not run: up to date, or restored from DVC's run-cache.
STATE_NAMES = {"skipped": "Skipped", "restored": "Cached"}


class ValidationFailed(GenpipeError):
    """The validate stage rejected the data; no stage after it ran."""


@task(task_run_name="plan: dvc status", cache_policy=NO_CACHE)
def plan_stages(
    project: Path, overrides: list[str] | dict[str, Any] | None, stage_names: list[str]
) -> StagePlan:
    """Apply the overrides, then ask DVC for the stage graph and what is stale (one process)."""
    from pipelines.params_overrides import as_override_strings

    plan = DvcSide.take(project).plan(as_override_strings(overrides), stage_names)
    logger = get_run_logger()
    logger.info("stages in dvc.yaml: %s", ", ".join(plan.order()))
    if plan.applied:
        logger.info("overrides written to params.yaml: %s", ", ".join(plan.applied))
    stale = "; ".join(f"{s} ({', '.join(r)})" for s, r in plan.stale.items())
    logger.info("stale up front: %s", stale or "none (a no-op)")
    return plan


@task(task_run_name="dvc repro {stage}", cache_policy=NO_CACHE)
def dvc_stage(
    project: Path,
    stage: str,
    run_id: str,
    timeout_seconds: float,
    plan: StagePlan,
    upstream: list[StageResult],
    extra_env: dict[str, str],
) -> StageResult | State:
    """One stage: skipped on the plan's word, else `dvc repro` (DVC's output goes to the log)."""
    logger = get_run_logger()
    upstream_ran = any(r.outcome != "skipped" for r in upstream)
    if plan.skip_without_dvc(stage, upstream_ran):
        now = time.time()
        result = StageResult(stage, "skipped", now, now, "up to date before the run", False)
        return Completed(name="Skipped", message="up to date: DVC was not started", data=result)
    env = {"GENPIPE_PIPELINE_RUN_ID": run_id, **extra_env}
    try:
        result = dvc_runner.run_stage(project, stage, env, timeout_seconds)
    except StageFailed as exc:
        logger.error("%s", exc.output or exc)
        raise
    logger.info(
        "DVC %s stage %s in %.1f s\n%s", result.outcome, stage, result.seconds, result.output
    )
    if result.outcome in STATE_NAMES:
        return Completed(name=STATE_NAMES[result.outcome], message=result.outcome, data=result)
    return result


@task(task_run_name="dispatch {stage}", cache_policy=NO_CACHE)
def remote_stage(
    dispatcher: Any,  # pipelines.dispatch.Dispatcher (imported only when dispatching)
    stage: str,
    timeout_seconds: float,
    plan: StagePlan,
    upstream: list[StageResult],
) -> StageResult | State:
    """One stage on a worker of its pool: skipped on the plan's word as a local stage would be,
    else sent, waited for and accepted (pipelines.dispatch.run_remote)."""
    from pipelines.dispatch import run_remote

    upstream_ran = any(r.outcome != "skipped" for r in upstream)
    if plan.skip_without_dvc(stage, upstream_ran):
        now = time.time()
        result = StageResult(stage, "skipped", now, now, "up to date before the run", False)
        return Completed(name="Skipped", message="up to date: not dispatched", data=result)
    result = run_remote(dispatcher, plan, stage, timeout_seconds)
    if result.outcome in STATE_NAMES:
        return Completed(
            name=STATE_NAMES[result.outcome],
            message=f"{result.outcome} on {result.host}",
            data=result,
        )
    return result


@task(cache_policy=NO_CACHE)
def publish_summary(project: Path, run_id: str, results: list[StageResult], plan: StagePlan) -> str:
    """The markdown summary and the metrics table, as Prefect artifacts of this flow run."""
    outputs = run_summary.collect(project, plan.files)
    applied = list(plan.applied)
    markdown = run_summary.render_markdown(run_id, results, outputs, applied)
    create_markdown_artifact(
        markdown, key="genpipe-summary", description="genpipe pipeline run summary"
    )
    rows = run_summary.metrics_table(outputs)
    if rows:
        create_table_artifact(rows, key="genpipe-metrics", description="metrics of the DVC stages")
    return markdown


def stage_timeouts_for(
    stages: list[str], requested: Mapping[str, float] | None
) -> dict[str, float]:
    """Every stage's timeout: the request, else DEFAULT_TIMEOUTS, else DEFAULT_TIMEOUT."""
    return {s: (requested or {}).get(s, DEFAULT_TIMEOUTS.get(s, DEFAULT_TIMEOUT)) for s in stages}


def thread_env(
    plan: StagePlan,
    environ: Mapping[str, str],
    local: Collection[str] | None = None,
) -> dict[str, dict[str, str]]:
    """Per stage, its GENPIPE_CPU_SHARE when it may run alongside others on its level of the graph
    (`local`: the stages that run on this host; the others' workers have their own cores)."""
    return {
        stage: cpu.share_env(peers, environ) if peers > 1 else {}
        for stage, peers in plan.sharing(local).items()
    }


@flow(name=FLOW_NAME, log_prints=True)
def genpipe_pipeline(
    overrides: list[str] | dict[str, Any] | None = None,
    project_dir: str | None = None,
    stage_timeouts: dict[str, float] | None = None,
    download_retries: int = 3,
    download_retry_delay_seconds: float = 10.0,
    dispatch: bool | None = None,
) -> dict[str, Any]:
    """dvc.yaml's stages in graph order, each as soon as its upstream is done; stale ones only.

    `dispatch` (None: params.yaml's orchestration.dispatch): send each stage to a worker of its
    work pool instead of running it here (pipelines/dispatch.py).
    """
    from prefect.runtime import flow_run

    project = Path(project_dir).resolve() if project_dir else project_root()
    run_id = str(flow_run.id)
    plan = plan_stages(project, overrides, sorted(stage_timeouts or {}))
    order = plan.order()
    timeouts = stage_timeouts_for(order, stage_timeouts)
    dispatcher = None
    if plan.dispatch if dispatch is None else dispatch:  # the parameter wins over params.yaml
        from pipelines.dispatch import prepare

        dispatcher = prepare(project, plan, run_id)
        get_run_logger().info(
            "dispatching commit %s from %s: %s",
            dispatcher.code.commit[:12],
            dispatcher.code.url,
            ", ".join(f"{s} -> {dispatcher.pool(s)}" for s in order),
        )
    remote = {s for s in order if dispatcher is not None and dispatcher.is_remote(s)}
    local = [s for s in order if s not in remote]
    envs = thread_env(plan, os.environ, local if remote else None)

    delays = [download_retry_delay_seconds * 2**i for i in range(download_retries)]
    retried = dvc_stage.with_options(retries=download_retries, retry_delay_seconds=delays or 0)
    futures: dict[str, PrefectFuture] = {}
    for stage in order:
        upstream = [futures[u] for u in plan.upstream.get(stage, ())]
        if stage in remote:
            futures[stage] = _remote_runner(dispatcher, stage, download_retries).submit(
                dispatcher, stage, timeouts[stage], plan, upstream
            )
            continue
        runner = retried if stage in RETRIED_STAGES else dvc_stage
        futures[stage] = runner.submit(
            project, stage, run_id, timeouts[stage], plan, upstream, envs.get(stage, {})
        )
    wait(list(futures.values()))
    results = _results_or_raise(futures, run_id)

    publish_summary(project, run_id, results, plan)
    return {
        "pipeline_run_id": run_id,
        "overrides": list(plan.applied),
        "stages": {
            r.stage: {
                "outcome": r.outcome,
                "state": futures[r.stage].state.name,  # Prefect's: Completed, Skipped, Cached
                "dvc_started": r.dvc_started,
                "started": r.started,
                "finished": r.finished,
                "host": r.host,  # a dispatched stage's worker host; None: this host
                "timings": dict(r.timings),
            }
            for r in results
        },
    }


def _remote_runner(dispatcher: Any, stage: str, download_retries: int) -> Any:
    """The remote task with its retries: a new child run when the worker is lost; the download
    stage (the network one) also on its own failures, as locally."""
    from pipelines.dispatch import retry_on_lost_worker

    if stage in RETRIED_STAGES:
        return remote_stage.with_options(retries=max(download_retries, dispatcher.config.retries))
    return remote_stage.with_options(
        retries=dispatcher.config.retries,
        retry_delay_seconds=0,
        retry_condition_fn=retry_on_lost_worker,
    )


def _results_or_raise(futures: Mapping[str, PrefectFuture], run_id: str) -> list[StageResult]:
    """Every stage's result, in graph order; the first failed stage's error otherwise.

    Stages downstream of a failure never started (Prefect left them NotReady).
    """
    results = []
    for stage, future in futures.items():
        if future.state.is_completed():
            results.append(future.result())
            continue
        if not future.state.is_failed():
            continue  # not started: an upstream stage failed
        try:
            future.result()
        except StageFailed as exc:
            if stage == VALIDATION_STAGE:
                raise ValidationFailed(
                    f"data validation failed, so no later stage ran (pipeline run {run_id}). "
                    "Read data/validation/summary.json and the Data Docs in "
                    "data/validation/docs, fix the data or the validate params, and run "
                    f"again.\n{exc}"
                ) from None
            raise
    if len(results) < len(futures):
        missing = [s for s in futures if s not in {r.stage for r in results}]
        raise GenpipeError(f"stages {missing} did not run and no stage failed (pipeline {run_id})")
    return results


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


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """`[-S key=value ...] [--preset FILE] [--project DIR]`; light, so it runs before Prefect."""
    p = argparse.ArgumentParser(
        prog="python -m pipelines", description="Run genpipe's DVC stages as a Prefect flow."
    )
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
    p.add_argument(
        "--dispatch",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="run each stage on a worker of its pool (orchestration.pools in params.yaml); "
        "default: orchestration.dispatch",
    )
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """`python -m pipelines [-S key=value ...]`: one local run of the flow."""
    args = parse_args(argv)
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
    started = time.perf_counter()
    try:
        result = genpipe_pipeline(
            overrides=args.overrides or None, project_dir=args.project, dispatch=args.dispatch
        )
    except GenpipeError as exc:
        print(f"genpipe pipeline: error: {exc}", file=sys.stderr)
        return 2
    seconds = time.perf_counter() - started  # the flow call, with Prefect's setup and teardown
    outcomes = ", ".join(
        f"{s}={v['outcome']}" + (f"@{v['host']}" if v["host"] else "")
        for s, v in result["stages"].items()
    )
    print(f"pipeline run {result['pipeline_run_id']} ({seconds:.2f} s): {outcomes}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
