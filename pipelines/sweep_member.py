"""Sweep members on workers (`python -m pipelines.sweep --dispatch`, docs/sweeps.md).

Each member runs whole, as one `dvc exp run --temp --pull`, on a worker of
`orchestration.sweep_pool`: the deployment `genpipe-sweep-member/<pool>`, whose pull step is the
stage flow's (`commit_checkout`), so the worker runs the sweep's commit with the controller's
params.yaml and dvc.lock. It comes back through DVC's experiment sharing: the worker's `dvc exp
push` (the experiment's git ref to the code remote, its outputs to the DVC remote), then the
controller's `dvc exp pull`, after which `dvc exp show` here lists it as it lists a local member.
"""

from __future__ import annotations

import logging
import os
import subprocess
import time
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from genpipe.config import OrchestrationConfig
from genpipe.errors import GenpipeError
from genpipe.sweeps.plan import Member
from pipelines import experiments
from pipelines.dispatch import (
    Dispatcher,
    WorkerLost,
    check_team,
    raise_unless_completed,
    read_lock,
    run_on_pool,
    written_by,
)
from pipelines.experiments import MemberRun
from pipelines.stage_flow import REMOTE_VAR, cache_root, configure, workspace

log = logging.getLogger(__name__)

MEMBER_FLOW = "genpipe-sweep-member"


def prepare(project: Path, config: OrchestrationConfig, sweep_id: str) -> Dispatcher:
    """Checked once, before any member is sent; then the baseline's outputs go to the DVC
    remote, so that members pull them instead of running those stages again."""
    from dvc.repo import Repo

    from genpipe import share
    from pipelines.code_remote import dvc_git_env

    with Repo(str(project)) as repo:
        outs = [out.def_path for stage in repo.index.stages for out in stage.outs]
    deployment = f"{MEMBER_FLOW}/{config.sweep_pool}"
    commit, url = check_team(project, config, written_by(outs), [deployment])
    os.environ.update(dvc_git_env(os.environ, project / ".dvc" / "tmp"))  # for `dvc exp pull`
    try:
        share.push(project)
    except share.ShareError as exc:
        log.warning("the baseline's outputs are not all on the DVC remote (%s); members run "
                    "the stages they miss", exc)  # fmt: skip
    return Dispatcher(project, config, commit, url, (project / "params.yaml").read_text(), sweep_id)


def run_member(
    dispatcher: Dispatcher, member: Member, run_id: str, log_path: Path, timeout: float
) -> MemberRun:
    """The member on a worker of the sweep pool (sent again if its worker is lost), then its
    experiment pulled here. Its MLflow run `run_id` is the parent of its stage runs."""
    project, config, pool = dispatcher.project, dispatcher.config, dispatcher.config.sweep_pool
    parameters = {"member": member.name, "target": member.target, "overrides": list(member.overrides),
                  "commit": dispatcher.commit, "params": dispatcher.params,
                  "lock": read_lock(project), "run_id": run_id, "timeout": timeout}  # fmt: skip
    log_path.parent.mkdir(parents=True, exist_ok=True)
    started = time.time()

    def ended(code: int, line: str) -> MemberRun:
        with log_path.open("a") as out:
            out.write(line + "\n")
        return MemberRun(member, code, started, time.time(), log_path)

    log_path.write_text("")
    for _ in range(config.lost_worker_retries + 1):
        child = run_on_pool(config, f"{MEMBER_FLOW}/{pool}", parameters, commit=dispatcher.commit,
                            code_url=dispatcher.code_url, name=f"{member.name} ({run_id[:8]})",
                            tags=[MEMBER_FLOW], budget=timeout)  # fmt: skip
        host = (child.labels or {}).get("prefect.worker.name") or "(no worker)"
        where = f"sweep member {member.name} on host {host} (flow run {child.name}, {child.id})"
        try:
            raise_unless_completed(child, where, member.name, pool, config,
                                   label=f"sweep member {member.name}",
                                   budget=f"{timeout:g} s (the sweep's member timeout)")  # fmt: skip
        except WorkerLost as exc:
            ended(-1, str(exc))
            continue
        except GenpipeError as exc:
            return ended(1, str(exc))
        try:
            experiments.pull(project, experiments.exp_ref(dispatcher.commit, member.name),
                             dispatcher.code_url)  # fmt: skip
        except Exception as exc:  # DVC's errors (git, the remote) have no common base with ours
            return ended(1, f"{where} completed, but `dvc exp pull` failed: {exc}")
        return ended(0, f"{where} completed; `dvc exp pull` brought it here")
    return ended(1, f"sweep member {member.name}: its worker was lost every time")


# Tasks of their own, so that Prefect records how long each took (benchmarks.multihost --sweep
# reads them: a member's dispatch overhead is the rest of its time).
@task(task_run_name="dvc exp run {member.name}", cache_policy=NO_CACHE)
def exp_run(
    ws: Path, member: Member, env: dict[str, str], log_path: Path, timeout: float
) -> MemberRun:
    """`dvc exp run --temp --pull`: what the baseline computed comes from the DVC remote."""
    return experiments.run_member(ws, member, env, log_path, timeout, pull=True)


@task(task_run_name="dvc exp push", cache_policy=NO_CACHE)
def exp_push(ws: Path, ref: str, git_remote: str) -> None:
    experiments.push(ws, ref, git_remote)


@flow(name=MEMBER_FLOW, log_prints=True)
def genpipe_sweep_member(
    member: str,
    target: str,
    overrides: list[str],
    commit: str,
    params: str,
    lock: str,
    run_id: str,
    timeout: float,
) -> dict[str, str]:
    """Run one member in the working directory (the pull step's commit folder); push it."""
    from genpipe.settings import get_settings
    from pipelines.code_remote import dvc_git_env

    folder, host = Path.cwd(), get_settings().host
    os.environ.update(dvc_git_env(os.environ, cache_root()))  # for `dvc exp push`
    ref = experiments.exp_ref(commit, member)
    env = {
        "PATH": os.pathsep.join([str(folder / "venv" / "bin"), os.environ.get("PATH", "")]),
        "GENPIPE_ROOT": "",  # the experiment's temporary copy is its project root
        "GENPIPE_PIPELINE_RUN_ID": run_id,
        "GENPIPE_PARENT_RUN_ID": run_id,
    }
    with workspace(folder) as ws:
        os.chdir(ws)
        # the commit's files, then the controller's params and lock: the member's baseline
        subprocess.run(["git", "-C", str(ws), "reset", "--quiet", "--hard"], check=True)
        configure(ws, params, lock)
        if experiments.holds(ws, ref):  # same name, same commit: this very experiment
            outcome = "held"
        else:
            run = exp_run(ws, Member(member, tuple(overrides), target), env,
                          folder / "logs" / f"{member}.log", timeout)  # fmt: skip
            if not run.ok:
                raise GenpipeError(f"[host {host}] sweep member {member}: `dvc exp run` exit "
                                   f"{run.returncode}; last lines:\n{experiments.tail(run.log_path)}")  # fmt: skip
            get_run_logger().info("%s", experiments.tail(run.log_path, 60))
            outcome = "ran"
        exp_push(ws, ref, os.environ[REMOTE_VAR])
    print(f"sweep member {member} {outcome} on {host}; pushed {ref}")
    return {"member": member, "host": host, "outcome": outcome}
