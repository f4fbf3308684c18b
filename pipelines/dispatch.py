"""Sending stages to workers on other hosts: the genpipe-pipeline flow's side of dispatch.

With `orchestration.dispatch` on (or `python -m pipelines --dispatch`), each stage whose pool in
`orchestration.pools` is not `local` runs as a flow run of the deployment `genpipe-stage/<pool>`
(pipelines/stage_flow.py), which a worker of that pool picks up. The parent flow stays the one
place that decides what runs and what counts:

1. **Before any stage** (`prepare`): every dvc.yaml stage has a pool; the checkout is clean and
   its commit is on the code remote (pipelines/code_remote.py); the controller has a default DVC
   remote; a deployment exists for every pool. Overrides travel as the difference between the
   commit's params.yaml and the controller's (after this run's overrides), plus its hash.
2. **Per stage** (`run_remote`): push the upstream outputs a worker will read and read dvc.lock
   (pipelines/dvc_sync.py snapshot), create the child run (`run_deployment(timeout=0)`: the job
   environment carries the commit and the code remote's URL for the pull step), wait for it with
   two clocks (`orchestration.queue_timeout_seconds` until a worker takes it, then the stage's
   timeout plus the zombie window), then accept its result: the child's dvc.lock entry and
   git-tracked outputs, checked out of the DVC remote here (dvc_sync accept). The controller
   never runs a dispatched stage.
3. **Faults**: a child that ends Crashed (its worker was killed, or the zombie automation saw its
   heartbeats stop: a dead host or a cut network) raises WorkerLost, and the task retries
   (`orchestration.retries`): a new child run, which any worker of the pool may take, another one
   when the lost host is gone. A child that Failed (the stage's own error), a stage no worker
   took in time, or one that ran over its timeout fail the flow with a message naming the stage
   and the host. Only the run the parent accepted counts: a late push from a lost worker leaves
   unreferenced objects on the remote, never a changed dvc.lock here.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from genpipe.config import OrchestrationConfig, load_params
from genpipe.config.orchestration import LOCAL as LOCAL_POOL
from genpipe.errors import GenpipeError
from pipelines import dvc_sync
from pipelines.code_remote import CodeRef, check_code
from pipelines.dvc_plan import StagePlan, _pythonpath
from pipelines.dvc_runner import StageFailed, StageResult
from pipelines.stage_worker import params_sha256

# A dispatched stage may take this long beyond its own timeout before the parent gives up on it:
# the engine's start and the clone, the pull and the push (docs/benchmarks.md, multihost).
START_AND_TRANSFER_SECONDS = 300.0
HELPER_TIMEOUT_SECONDS = 1800.0  # a dvc_sync helper on the controller (push, accept)


class DispatchError(GenpipeError):
    """The flow cannot send stages to workers; the message says what to fix."""


class WorkerLost(StageFailed):
    """A dispatched stage's worker died or went silent; the stage is sent again."""


@dataclass(frozen=True)
class Dispatcher:
    """What the flow decided before any stage ran, for every dispatched stage."""

    project: Path
    config: OrchestrationConfig
    code: CodeRef
    overrides: tuple[str, ...]  # against the commit's params.yaml
    params_sha256: str
    run_id: str

    def pool(self, stage: str) -> str:
        return self.config.pool_of(stage)

    def is_remote(self, stage: str) -> bool:
        return self.pool(stage) != LOCAL_POOL


def params_delta(base: Mapping[str, Any], target: Mapping[str, Any], prefix: str = "") -> list[str]:
    """Overrides (Hydra grammar, as `dvc exp run -S`) that turn `base` into `target`.

    Leaves are compared by their JSON, so 1 and 1.0 differ as they do in DVC's params hash.
    """
    from pipelines.params_overrides import _hydra_literal

    out = []
    for key, value in target.items():
        dotted = f"{prefix}{key}"
        if key not in base:
            out.append(f"+{dotted}={_hydra_literal(value)}")
        elif isinstance(value, Mapping) and isinstance(base[key], Mapping):
            out += params_delta(base[key], value, f"{dotted}.")
        elif json.dumps(value, sort_keys=True) != json.dumps(base[key], sort_keys=True):
            out.append(f"{dotted}={_hydra_literal(value)}")
    out += [f"~{prefix}{key}" for key in base if key not in target]
    return out


def prepare(project: Path, plan: StagePlan, run_id: str) -> Dispatcher:
    """Check everything dispatch needs, once, before any stage runs (module doc, step 1)."""
    import subprocess

    import yaml

    if not os.environ.get("PREFECT_API_URL"):
        raise DispatchError(
            "dispatch needs the team's Prefect server, which workers reach too: set "
            'PREFECT_API_URL (eval "$(make -s services-env)"), or run without --dispatch'
        )
    config = load_params(project / "params.yaml").orchestration
    missing = [s for s in plan.stages if s not in config.pools]
    unknown = sorted(set(config.pools) - set(plan.stages))
    if missing or unknown:
        raise DispatchError(
            "orchestration.pools in params.yaml must map every dvc.yaml stage to a work pool or "
            f"`{LOCAL_POOL}`: "
            + "; ".join(
                ([f"add {', '.join(missing)}"] if missing else [])
                + ([f"remove {', '.join(unknown)} (not in dvc.yaml)"] if unknown else [])
            )
        )
    code = check_code(project, config.git_remote, written_by_runs(plan))
    _check_dvc_remote(project)
    committed = subprocess.run(
        ["git", "-C", str(project), "show", f"{code.commit}:params.yaml"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    current = yaml.safe_load((project / "params.yaml").read_text()) or {}
    overrides = params_delta(yaml.safe_load(committed) or {}, current)
    used = sorted({config.pool_of(s) for s in plan.stages} - {LOCAL_POOL})
    _check_deployments(used)
    return Dispatcher(project, config, code, tuple(overrides), params_sha256(current), run_id)


def written_by_runs(plan: StagePlan) -> set[str]:
    """What a run writes in the checkout and may differ from the commit: dvc.lock, params.yaml
    (the overrides), every stage output (git-tracked or not: workers get them through dvc.lock
    and the DVC remote, never from git) and the .gitignore files DVC keeps next to them."""
    outs = {p for files in plan.files.values() for key in ("outs", "metrics") for p in files[key]}
    ignores = {str(Path(p).parent / ".gitignore") for p in outs}
    return {"dvc.lock", "params.yaml", *outs, *ignores}


def _check_dvc_remote(project: Path) -> None:
    from dvc.config import Config

    if not Config(dvc_dir=str(project / ".dvc"))["core"].get("remote"):
        raise DispatchError(
            f"the DVC repo {project} has no default remote, and dispatched stages move their "
            "data through it: `make services-dvc-remote` (the team services' remote) or "
            "`dvc remote add -d <name> <url>`"
        )


def _check_deployments(pools: Sequence[str]) -> None:
    from prefect import get_client
    from prefect.exceptions import ObjectNotFound

    from pipelines.deploy_stages import deployment_name

    missing = []
    with get_client(sync_client=True) as client:
        for pool in pools:
            try:
                client.read_deployment_by_name(deployment_name(pool))
            except ObjectNotFound:
                missing.append(deployment_name(pool))
    if missing:
        raise DispatchError(
            f"the Prefect server has no deployment {', '.join(missing)}: run `make deploy-stages` "
            "(with PREFECT_API_URL set to the team's server), then start workers with "
            "`make worker POOL=<pool>`"
        )


# Stages whose outputs are on the DVC remote already, per flow run: pushed by the controller
# before an earlier dispatch, or pushed by the worker that ran them.
_ON_REMOTE: dict[str, set[str]] = {}
_ON_REMOTE_LOCK = threading.Lock()


def _helper_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": _pythonpath()}


def snapshot(dispatcher: Dispatcher, upstream: Sequence[str]) -> dict[str, Any]:
    """Push the upstream outputs not on the remote yet; the controller's dvc.lock, under lock."""
    with _ON_REMOTE_LOCK:
        known = _ON_REMOTE.setdefault(dispatcher.run_id, set())
        todo = [u for u in upstream if u not in known]
        got = dvc_sync.call(
            dispatcher.project, "snapshot", todo, _helper_env(), HELPER_TIMEOUT_SECONDS
        )
        known.update(todo)
    return got["lock"]


def run_remote(
    dispatcher: Dispatcher,
    plan: StagePlan,
    stage: str,
    timeout_seconds: float,
) -> StageResult:
    """Send one stage to its pool, wait for it, accept its result (module doc, steps 2-3)."""
    from prefect import get_run_logger
    from prefect.deployments import run_deployment

    from pipelines.deploy_stages import COMMIT_VAR, REMOTE_VAR, deployment_name
    from pipelines.stage_flow import RESULT_KEY, parse_result

    logger = get_run_logger()
    pool = dispatcher.pool(stage)
    t0 = time.monotonic()
    upstream = list(plan.upstream.get(stage, ()))
    lock = snapshot(dispatcher, upstream)
    pull = [p for u in upstream for p in plan.files.get(u, {}).get("outs", ())]
    t_sent = time.monotonic()
    child = run_deployment(
        deployment_name(pool),
        parameters={
            "stage": stage,
            "commit": dispatcher.code.commit,
            "overrides": list(dispatcher.overrides),
            "params_sha256": dispatcher.params_sha256,
            "lock": lock,
            "pull": pull,
            "uncached": list(plan.files.get(stage, {}).get("uncached", ())),
            "pipeline_run_id": dispatcher.run_id,
            "timeout_seconds": timeout_seconds,
        },
        job_variables={
            "env": {COMMIT_VAR: dispatcher.code.commit, REMOTE_VAR: dispatcher.code.url}
        },
        flow_run_name=f"{stage} ({dispatcher.run_id[:8]})",
        tags=["genpipe", f"genpipe-stage:{stage}"],
        timeout=0,
    )
    logger.info("stage %s sent to pool %s as flow run %s", stage, pool, child.id)
    final, host, t_taken = _wait(dispatcher, stage, pool, child.id, timeout_seconds)
    t_done = time.monotonic()
    result = _read_result(child.id, RESULT_KEY, parse_result, stage, host)
    if result["commit"] != dispatcher.code.commit:
        raise StageFailed(stage, f"stage {stage} on host {host} ran commit {result['commit']}")
    accept_seconds = 0.0
    if result["outcome"] != "skipped":
        t_accept = time.monotonic()
        try:
            dvc_sync.call(
                dispatcher.project,
                "accept",
                [stage],
                _helper_env(),
                HELPER_TIMEOUT_SECONDS,
                request={"entry": result["entry"], "files": result["files"]},
            )
        except dvc_sync.SyncError as exc:
            raise StageFailed(
                stage, f"stage {stage}: the controller could not take host {host}'s result: {exc}"
            ) from None
        accept_seconds = time.monotonic() - t_accept
        with _ON_REMOTE_LOCK:
            _ON_REMOTE.setdefault(dispatcher.run_id, set()).add(stage)
    timings = {
        "snapshot": t_sent - t0,
        "queue": t_taken - t_sent,
        "child": t_done - t_taken,  # engine start, clone, the phases below, result artifact
        **{k: float(v) for k, v in result["timings"].items()},  # setup, pull, repro, push
        "accept": accept_seconds,
        "total": time.monotonic() - t0,
    }
    logger.info(
        "stage %s %s on host %s (flow run %s); seconds: %s",
        stage,
        result["outcome"],
        result["host"],
        final.id,
        ", ".join(f"{k} {v:.1f}" for k, v in timings.items()),
    )
    return StageResult(
        stage,
        result["outcome"],
        float(result["started"]),
        float(result["finished"]),
        result["output"],
        host=result["host"],
        timings=timings,
    )


def _wait(
    dispatcher: Dispatcher, stage: str, pool: str, run_id: Any, timeout_seconds: float
) -> tuple[Any, str, float]:
    """Poll the child until it ends; returns (flow run, worker host, when a worker took it).

    Raises WorkerLost for a Crashed child, StageFailed for every other way it does not complete.
    """
    from prefect import get_client
    from prefect.client.schemas.objects import StateType

    config = dispatcher.config
    created = time.monotonic()
    taken: float | None = None
    run_budget = timeout_seconds + config.zombie_after_seconds + START_AND_TRANSFER_SECONDS
    with get_client(sync_client=True) as client:
        while True:
            run = client.read_flow_run(run_id)
            state = run.state
            host = (run.labels or {}).get("prefect.worker.name") or "(no worker yet)"
            kind = state.type if state else StateType.SCHEDULED
            if taken is None and kind in (StateType.PENDING, StateType.RUNNING):
                taken = time.monotonic()
            if state is not None and state.is_final():
                break
            now = time.monotonic()
            if taken is None and now - created > config.queue_timeout_seconds:
                _cancel(client, run_id, force=True)
                raise StageFailed(
                    stage,
                    f"stage {stage}: no worker of pool {pool} took it within "
                    f"{config.queue_timeout_seconds:g} s (orchestration.queue_timeout_seconds); "
                    f"start one with `make worker POOL={pool}` and run again",
                )
            if taken is not None and now - taken > run_budget:
                _cancel(client, run_id, force=False)
                raise StageFailed(
                    stage,
                    f"stage {stage} on host {host} did not finish within {run_budget:g} s (its "
                    f"timeout {timeout_seconds:g} s, the zombie window and "
                    f"{START_AND_TRANSFER_SECONDS:g} s for start-up and transfers); flow run "
                    f"{run_id} was cancelled. Raise stage_timeouts['{stage}'] if it is slow",
                )
            time.sleep(config.poll_seconds)
    taken = taken if taken is not None else time.monotonic()
    message = (state.message or "").strip()
    where = f"stage {stage} on host {host} (flow run {run.name}, {run_id})"
    if kind == StateType.COMPLETED:
        return run, host, taken
    if kind == StateType.CRASHED:
        raise WorkerLost(stage, f"{where} crashed: {message}; sending it again")
    if kind == StateType.CANCELLED:
        raise StageFailed(stage, f"{where} was cancelled: {message}")
    raise StageFailed(stage, f"{where} failed: {message}")


def _cancel(client: Any, run_id: Any, force: bool) -> None:
    """Cancel a child run: Cancelling asks its worker to stop it; a run no worker holds (or a
    lost one) is set Cancelled outright."""
    from prefect.states import Cancelled, Cancelling

    state = Cancelled(message="the genpipe flow gave up on it") if force else Cancelling()
    with contextlib.suppress(Exception):  # best effort: the caller's error matters more
        client.set_flow_run_state(run_id, state, force=True)


def _read_result(run_id: Any, key: str, parse: Any, stage: str, host: str) -> dict[str, Any]:
    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run_id]))
        )
    for artifact in found:
        if artifact.key == key:
            return parse(str(artifact.data))
    raise StageFailed(
        stage, f"stage {stage} on host {host} completed without its result artifact {key!r}"
    )


def retry_on_lost_worker(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect's retry_condition_fn: retry only when the worker was lost, not when the stage
    failed (a code or data error fails the same way on every worker)."""
    try:
        state.result()
    except WorkerLost:
        return True
    except BaseException:
        return False
    return False
