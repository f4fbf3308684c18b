"""Prototype flows served from ctl by git daemon: a parent that dispatches stage runs to work
pools, and the stage child that a worker clones at the parent's commit and runs."""

import os
import socket
import subprocess
import time

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.deployments import run_deployment


@flow(name="stage", log_prints=True)
def stage(name: str, seconds: int = 20, quiet: bool = False) -> dict:
    """Stand-in for one DVC stage: says where and at which commit it runs, then works `seconds`."""
    host = socket.gethostname()
    commit = subprocess.run(
        ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    started = time.time()
    print(f"stage {name} on {host} at commit {commit} in {os.getcwd()}")
    for i in range(seconds):
        if not quiet:  # quiet: nothing on stdout between the first and the last line
            print(f"stage {name} tick {i}")
        time.sleep(1)
    print(f"stage {name} done on {host}")
    report = {"name": name, "host": host, "commit": commit, "start": started, "end": time.time()}
    create_markdown_artifact(key=f"stage-{name}", markdown=repr(report))
    return report


class StageFailed(RuntimeError):
    pass


@task(retries=1, retry_delay_seconds=0)
def dispatch(
    name: str, deployment: str, commit: str, seconds: int, timeout: float | None, quiet: bool
) -> str:
    """Run one stage on its pool and wait; a run that did not complete fails this task (retried
    once: a new flow run on the same pool, so another worker of that pool may take it)."""
    run = run_deployment(
        deployment,
        parameters={"name": name, "seconds": seconds, "quiet": quiet},
        job_variables={"env": {"GENPIPE_COMMIT": commit}},
        timeout=timeout,
        poll_interval=2,
    )
    if not run.state or not run.state.is_completed():
        state = run.state.name if run.state else "unknown"
        raise StageFailed(
            f"stage {name} ({deployment}) ended {state} on worker"
            f" {(run.labels or {}).get('prefect.worker.name', '(none)')}"
            f" (flow run {run.id}): {run.state.message if run.state else ''}"
        )
    return str(run.id)


@flow(name="pipeline", log_prints=True)
def pipeline(
    commit: str,
    plan: dict[str, str],
    seconds: int = 20,
    timeout: float | None = None,
    quiet: bool = False,
):
    futures = {
        n: dispatch.submit(n, dep, commit, seconds, timeout, quiet) for n, dep in plan.items()
    }
    return {n: f.result() for n, f in futures.items()}
