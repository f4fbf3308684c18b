"""Sending stages to workers: the pipeline flow's side (pipelines/README.md, "dispatch").

A stage DVC can skip or restore from the team's run-cache needs no worker; any other is sent with
`run_deployment` and, once its worker pushed the outputs and the run record, restored here from
that record, keyed by the stage's command, deps and params as the controller has them.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from genpipe.config import OrchestrationConfig
from genpipe.config.orchestration import LOCAL
from genpipe.errors import GenpipeError
from pipelines.code_remote import check_code
from pipelines.deploy import NO_WORKER, expected_automations, same_automation
from pipelines.dvc_stage import StageFailed, StageResult, settle
from pipelines.plan import StagePlan
from pipelines.stage_flow import COMMIT_VAR, REMOTE_VAR

STAGE_FLOW = "genpipe-stage"
DISPATCH_TAG = "genpipe-dispatch"  # the queue-timeout automation watches runs with this tag
GRACE_SECONDS = 120.0  # the controller waits this long past the automations' windows


class WorkerLost(StageFailed):
    """A dispatched run's worker died or went silent; the run is sent again."""


def stage_tag(stage: str) -> str:
    """The tag a stage's runs carry; its budget automation matches it."""
    return f"genpipe-stage:{stage}"


@dataclass(frozen=True)
class Dispatcher:
    """What the flow checked before any stage ran, for every dispatched stage."""

    project: Path
    config: OrchestrationConfig
    commit: str
    code_url: str  # where workers fetch the commit
    params: str  # the controller's params.yaml (after this run's overrides)
    run_id: str


def prepare(project: Path, plan: StagePlan, config: OrchestrationConfig, run_id: str) -> Dispatcher:
    """Everything dispatch needs, checked once, before any stage runs."""
    pools = sorted({config.pool_of(s) for s in plan.stages} - {LOCAL})
    deployments = [f"{STAGE_FLOW}/{pool}" for pool in pools]
    commit, url = check_team(project, config, written_by_runs(plan), deployments)
    return Dispatcher(project, config, commit, url, (project / "params.yaml").read_text(), run_id)


def check_team(
    project: Path, config: OrchestrationConfig, allowed_dirty: set[str], deployments: list[str]
) -> tuple[str, str]:
    """(commit, code remote URL) workers will run, once the Prefect API, the checkout, its DVC
    remote and the server's deployments and automations are as dispatch needs them."""
    from dvc.config import Config
    from prefect import get_client
    from prefect.exceptions import ObjectNotFound

    if not os.environ.get("PREFECT_API_URL"):
        raise GenpipeError(
            "dispatch needs the team's Prefect server, which workers reach too: set "
            'PREFECT_API_URL (eval "$(make -s services-env)"), or run without --dispatch'
        )
    commit, url = check_code(project, config.git_remote, allowed_dirty)
    if not Config(dvc_dir=str(project / ".dvc"))["core"].get("remote"):
        raise GenpipeError(
            f"the DVC repo {project} has no default remote, and dispatched runs move their "
            "data through it: `make services-dvc-remote` or `dvc remote add -d <name> <url>`"
        )
    problems = []
    with get_client(sync_client=True) as client:
        for name in deployments:
            try:
                client.read_deployment_by_name(name)
            except ObjectNotFound:
                problems.append(f"no deployment {name}")
        for wanted in expected_automations(config):
            if not any(
                same_automation(a, wanted) for a in client.read_automations_by_name(wanted.name)
            ):
                problems.append(f"automation {wanted.name} missing or not as params.yaml says")
    if problems:
        raise GenpipeError(
            f"the Prefect server is not set up for these params ({'; '.join(problems)}): run "
            "`make deploy-stages` with PREFECT_API_URL set, then `make worker POOL=<pool>`"
        )
    return commit, url


def written_by_runs(plan: StagePlan) -> set[str]:
    """What a run writes in the checkout and may differ from the commit: dvc.lock, params.yaml
    (the overrides), every stage output and the .gitignore files DVC keeps next to them."""
    return written_by(p for f in plan.files.values() for k in ("outs", "metrics") for p in f[k])


def written_by(outs: Iterable[str]) -> set[str]:
    outs = set(outs)
    return {"dvc.lock", "params.yaml", *outs, *(str(Path(p).parent / ".gitignore") for p in outs)}


def run_stage(dispatcher: Dispatcher, stage: str) -> StageResult:
    """Restored from the team's run-cache if DVC can; else run on a worker, then restored here
    from the run record it pushed."""
    project, config = dispatcher.project, dispatcher.config
    pool = config.pool_of(stage)
    t0 = time.time()
    if (outcome := settle(project, stage, pull=True)) is not None:
        return StageResult(stage, outcome, t0, time.time())
    t_sent = time.time()
    parameters = {"stage": stage, "commit": dispatcher.commit, "params": dispatcher.params,
                  "lock": read_lock(project), "pipeline_run_id": dispatcher.run_id}  # fmt: skip
    child = run_on_pool(config, f"{STAGE_FLOW}/{pool}", parameters, commit=dispatcher.commit,
                        code_url=dispatcher.code_url, name=f"{stage} ({dispatcher.run_id[:8]})",
                        tags=[stage_tag(stage)], budget=config.timeout_of(stage))  # fmt: skip
    host = (child.labels or {}).get("prefect.worker.name") or "(no worker)"
    where = f"stage {stage} on host {host} (flow run {child.name}, {child.id})"
    raise_unless_completed(child, where, stage, pool, config)
    t_back = time.time()
    if settle(project, stage, pull=True) != "restored":
        raise StageFailed(stage, f"{where} completed, but the DVC remote has no run record of it "
                          "for the controller's inputs: the worker ran other code, params or "
                          "data, or its push failed (see its log)")  # fmt: skip
    # a completed run has every time stamp
    timings = {"settle": t_sent - t0, "queue": (child.start_time - child.created).total_seconds(),
               "child": (child.end_time - child.start_time).total_seconds(),
               "accept": time.time() - t_back, "total": time.time() - t0}  # fmt: skip
    return StageResult(stage, "ran", t0, time.time(), host=host, timings=timings)


def run_on_pool(
    config: OrchestrationConfig, deployment: str, parameters: Mapping[str, Any], *,
    commit: str, code_url: str, name: str, tags: list[str], budget: float,
) -> Any:  # fmt: skip
    """Run `deployment` (its pull step fetches `commit` from `code_url`) on a worker of its pool;
    wait on its state events until it ends (the automations end it in time). Prefect's FlowRun."""
    from prefect.deployments import run_deployment

    child = run_deployment(deployment, parameters=dict(parameters), flow_run_name=name, timeout=0,
                           job_variables={"env": {COMMIT_VAR: commit, REMOTE_VAR: code_url}},
                           tags=["genpipe", DISPATCH_TAG, *tags])  # fmt: skip
    deadline = config.queue_timeout_seconds + budget + config.zombie_after_seconds + GRACE_SECONDS
    return wait_for_end(child.id, deadline)


def wait_for_end(flow_run_id: Any, seconds: float) -> Any:
    """Prefect's FlowRun once final, or as it is after `seconds`. `wait_for_flow_run` also ends,
    as a timeout, when the server closes its event stream cleanly: then it is called again."""
    from prefect import get_client
    from prefect.exceptions import FlowRunWaitTimeout
    from prefect.flow_runs import wait_for_flow_run
    from prefect.utilities.asyncutils import run_coro_as_sync

    end = time.monotonic() + seconds
    while True:
        started = time.monotonic()
        with contextlib.suppress(FlowRunWaitTimeout):
            left = max(1, math.ceil(end - started))
            return run_coro_as_sync(wait_for_flow_run(flow_run_id, timeout=left))
        with get_client(sync_client=True) as client:
            run = client.read_flow_run(flow_run_id)
        if (run.state and run.state.is_final()) or time.monotonic() >= end:
            return run
        time.sleep(max(0.0, started + 1.0 - time.monotonic()))  # a stream closed at once


def raise_unless_completed(
    child: Any, where: str, stage: str, pool: str, config: OrchestrationConfig, *,
    label: str | None = None, budget: str | None = None,
) -> None:  # fmt: skip
    """WorkerLost for a Crashed run (sent again); StageFailed for every other way it ended.
    `label` names the work in messages (default "stage <stage>"), `budget` its time limit and
    where it is set (default the stage's orchestration.timeouts entry)."""
    from prefect.client.schemas.objects import StateType

    label = label or f"stage {stage}"
    budget = budget or (f"{config.timeout_of(stage):g} s (orchestration.timeouts in params.yaml; "
                        "raise it, then `make deploy-stages`)")  # fmt: skip
    state = child.state
    kind, message = (state.type, (state.message or "").strip()) if state else (None, "")
    if kind == StateType.COMPLETED:
        return
    if kind == StateType.CRASHED:
        raise WorkerLost(stage, f"{where} crashed: {message}; sending it again")
    if kind == StateType.CANCELLED and state.name == NO_WORKER:
        raise StageFailed(stage, f"{label}: no worker of pool {pool} took it within "
                          f"{config.queue_timeout_seconds:g} s (orchestration.queue_timeout_seconds); "
                          f"start one with `make worker POOL={pool}` and run again")  # fmt: skip
    if kind == StateType.CANCELLED:
        raise StageFailed(stage, f"{where} was cancelled ({message}): it ran past its budget, "
                          f"{budget}")  # fmt: skip
    if state is None or not state.is_final():
        raise StageFailed(stage, f"{where} is still {state.name if state else 'unscheduled'}, "
                          "past the automations' deadlines: run `make deploy-stages`")  # fmt: skip
    raise StageFailed(stage, f"{where} failed: {message}")


def retry_condition(stage: str, retries: int, lost: int) -> Callable[..., bool]:
    """Prefect's retry_condition_fn: a lost worker is retried `lost` times, any other failure of
    a stage with retries (the network stage, download) `retries` times."""

    def condition(task: Any, task_run: Any, state: Any) -> bool:
        try:
            state.result()
        except WorkerLost:
            return task_run.run_count <= lost
        except BaseException:
            return task_run.run_count <= retries
        return False

    return condition


def read_lock(project: Path) -> str:
    """dvc.lock as it is now, read under DVC's lock (a stage may be writing it)."""
    from dvc.repo import Repo, lock_repo

    with Repo(str(project), _wait_for_lock=True) as repo, lock_repo(repo):
        return (project / "dvc.lock").read_text() if (project / "dvc.lock").exists() else ""
