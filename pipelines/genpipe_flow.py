"""The genpipe Prefect flow: run dvc.yaml's stale stages, then publish what they produced.

It only wires and names no stage: the graph is dvc.yaml's, the policy (timeouts, retries, gate,
pools) params.yaml's `orchestration:`; DVC decides what runs (pipelines/README.md).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.futures import PrefectFuture, wait
from prefect.states import Completed, State

from genpipe import cpu, share
from genpipe.config.orchestration import LOCAL
from genpipe.errors import GenpipeError
from genpipe.overrides import read_preset
from genpipe.services.servers import prefect_api, prefect_api_unusable
from genpipe.settings import project_root
from pipelines import dvc_stage, run_summary
from pipelines.dispatch import prepare, retry_condition, run_stage
from pipelines.dvc_stage import StageFailed, StageResult
from pipelines.plan import StagePlan, make_plan

FLOW_NAME = "genpipe-pipeline"
STATE_NAMES = {"skipped": "Skipped", "restored": "Cached"}  # a stage that did not run


class ValidationFailed(GenpipeError):
    """The gate stage (validate) rejected the data; no stage after it ran."""


@task(task_run_name="plan: dvc status", cache_policy=NO_CACHE)
def plan_stages(project: Path, overrides: Any, dispatch: bool | None) -> tuple[StagePlan, Any]:
    """Apply the overrides, then ask DVC for the stage graph and what is stale."""
    from genpipe.overrides import as_override_strings

    plan, config = make_plan(project, as_override_strings(overrides), dispatch)
    stale = "; ".join(f"{s} ({', '.join(r)})" for s, r in plan.stale.items())
    get_run_logger().info("stages in dvc.yaml: %s; overrides written to params.yaml: %s; stale up "
                          "front: %s", ", ".join(plan.order()), ", ".join(plan.applied) or "none",
                          stale or "none (a no-op)")  # fmt: skip
    return plan, config


def as_state(result: StageResult, where: str = "") -> StageResult | State:
    """A stage that did not run ends in a Completed state named for what DVC did instead."""
    if result.outcome not in STATE_NAMES:
        return result
    message = f"{result.outcome}{where}" if result.dvc_started else "up to date: DVC not asked"
    return Completed(name=STATE_NAMES[result.outcome], message=message, data=result)


def skipped_by_plan(stage: str, upstream: list[StageResult], plan: StagePlan) -> StageResult | None:
    if not plan.skip_without_dvc(stage, any(r.outcome != "skipped" for r in upstream)):
        return None
    return StageResult(stage, "skipped", time.time(), time.time(), dvc_started=False)


@task(task_run_name="{stage}", cache_policy=NO_CACHE)
def local_stage(
    project: Path, stage: str, timeout: float, plan: StagePlan, upstream: list[StageResult],
    env: dict[str, str], push: bool,
) -> StageResult | State:  # fmt: skip
    """One stage in this checkout; `push`: its outputs, for the workers downstream."""
    result = skipped_by_plan(stage, upstream, plan)
    if result is None:
        started = time.time()  # an always_changed stage always runs: nothing to settle
        always = "always changed" in plan.stale.get(stage, ())
        outcome = None if always else dvc_stage.settle(project, stage)
        if outcome is not None:
            result = StageResult(stage, outcome, started, time.time())
        else:
            try:
                result = dvc_stage.run(project, stage, env, timeout)
            except StageFailed as exc:
                get_run_logger().error("%s", exc.output or exc)
                raise
            get_run_logger().info(
                "stage %s ran in %.1f s\n%s", stage, result.seconds, result.output
            )
    if push:
        started = time.time()
        share.push(project, [stage])
        result = dataclasses.replace(result, timings={"share": time.time() - started})
    return as_state(result)


@task(task_run_name="dispatch {stage}", cache_policy=NO_CACHE)
def dispatched_stage(
    dispatcher: Any, stage: str, plan: StagePlan, upstream: list[StageResult]
) -> StageResult | State:
    """One stage on a worker of its pool (pipelines.dispatch), unless DVC needs no run."""
    result = skipped_by_plan(stage, upstream, plan) or run_stage(dispatcher, stage)
    return as_state(result, f" from the team's run-cache ({dispatcher.config.pool_of(stage)})")


@task(cache_policy=NO_CACHE)
def publish_summary(project: Path, run_id: str, results: list[StageResult], plan: StagePlan) -> str:
    """The markdown summary and the metrics table, as Prefect artifacts of this flow run."""
    outputs = run_summary.collect(project, plan.files)
    markdown = run_summary.render_markdown(run_id, results, outputs, plan.applied)
    create_markdown_artifact(markdown, key="genpipe-summary", description="genpipe run summary")
    if rows := outputs.metrics:  # JSON scalars: flatten writes lists as JSON text
        create_table_artifact(rows, key="genpipe-metrics", description="metrics of the DVC stages")
    return markdown


@flow(name=FLOW_NAME, log_prints=True)
def genpipe_pipeline(
    overrides: list[str] | dict[str, Any] | None = None,
    project_dir: str | None = None,
    dispatch: bool | None = None,
) -> dict[str, Any]:
    """dvc.yaml's stale stages, each as soon as its upstream is done; `dispatch` (None:
    orchestration.dispatch) sends stages to workers of their pools."""
    from prefect.runtime import flow_run

    project = Path(project_dir).resolve() if project_dir else project_root()
    os.chdir(project)  # DVC's Python API, like its CLI, works from the project folder
    run_id = str(flow_run.id)
    plan, config = plan_stages(project, overrides, dispatch)
    order, dispatcher = plan.order(), None
    if config.dispatch if dispatch is None else dispatch:
        dispatcher = prepare(project, plan, config, run_id)
    remote = {s for s in order if dispatcher and config.pool_of(s) != LOCAL}
    feeds_workers = {u for s in remote & plan.may_run() for u in plan.upstream[s]} - remote
    peers = plan.sharing([s for s in order if s not in remote])

    futures: dict[str, PrefectFuture] = {}
    for stage in order:
        upstream = [futures[u] for u in plan.upstream[stage]]
        retries = config.retries.get(stage, 0)
        if stage in remote:
            futures[stage] = dispatched_stage.with_options(
                retries=max(retries, config.lost_worker_retries),
                retry_delay_seconds=config.retry_delay_seconds if retries else 0,
                retry_condition_fn=retry_condition(stage, retries, config.lost_worker_retries),
            ).submit(dispatcher, stage, plan, upstream)
            continue
        env = {"GENPIPE_PIPELINE_RUN_ID": run_id}
        if peers.get(stage, 1) > 1:  # times the flow's own share, if it has one
            env.update(cpu.share_env(peers[stage]))
        delays = [config.retry_delay_seconds * 2**i for i in range(retries)]
        runner = local_stage.with_options(retries=retries, retry_delay_seconds=delays or 0)
        timeout, push = config.timeout_of(stage), stage in feeds_workers
        futures[stage] = runner.submit(project, stage, timeout, plan, upstream, env, push)
    wait(list(futures.values()))
    results = _results_or_raise(futures, run_id, config.gate)

    publish_summary(project, run_id, results, plan)
    stages = {
        r.stage: {**dataclasses.asdict(r), "state": futures[r.stage].state.name} for r in results
    }
    for info in stages.values():  # host: a dispatched stage's worker (None: this host)
        del info["stage"], info["output"]
    return {"pipeline_run_id": run_id, "overrides": list(plan.applied), "stages": stages}


def _results_or_raise(
    futures: Mapping[str, PrefectFuture], run_id: str, gate: str
) -> list[StageResult]:
    """Every stage's result in graph order, or the first failed stage's error (the stages
    downstream of a failure never started: Prefect left them NotReady)."""
    for stage, future in futures.items():
        if not future.state.is_failed():
            continue
        try:
            future.result()
        except StageFailed as exc:
            if stage == gate:
                raise ValidationFailed(
                    f"data validation failed (stage {gate}, orchestration.gate), so no later "
                    f"stage ran (pipeline run {run_id}). Read data/validation/summary.json and "
                    "the Data Docs in data/validation/docs, fix the data or the validate params, "
                    f"and run again.\n{exc}"
                ) from None
            raise
    if missing := [s for s, f in futures.items() if not f.state.is_completed()]:
        raise GenpipeError(f"stages {missing} did not run and no stage failed (pipeline {run_id})")
    return [f.result() for f in futures.values()]


def main(argv: list[str] | None = None) -> int:
    # fmt: off
    p = argparse.ArgumentParser(prog="python -m pipelines", description="genpipe's stages as a Prefect flow")
    p.add_argument("-S", "--set-param", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a params.yaml value, as `dvc exp run -S` (repeatable)")
    p.add_argument("--preset", metavar="FILE", help="YAML list of KEY=VALUE applied before any -S")
    p.add_argument("--project", help="project folder (default: the one holding dvc.yaml)")
    p.add_argument("--dispatch", action=argparse.BooleanOptionalAction, default=None,
                   help="run stages on workers of their pools (default: orchestration.dispatch)")
    # fmt: on
    args = p.parse_args(argv)
    if problem := prefect_api_unusable(os.environ):
        print(f"genpipe pipeline: error: {problem}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    started = time.perf_counter()
    try:
        overrides = [*(read_preset(Path(args.preset)) if args.preset else []), *args.overrides]
        with prefect_api():
            result = genpipe_pipeline(overrides or None, args.project, args.dispatch)
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
