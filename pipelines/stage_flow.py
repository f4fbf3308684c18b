"""The `genpipe-stage` flow: one DVC stage on a worker, in one process, with DVC's Python API.

Deployed per work pool from prefect.yaml and dispatched by the pipeline flow (pipelines/dispatch.py).
Its pull step (pipelines.checkout.commit_checkout) makes the working directory the commit's
folder. In a free workspace of it: the controller's params.yaml and dvc.lock, the upstream outputs
pulled, the stage reproduced (its command runs the commit's installed genpipe), then the outputs
and after them the run record pushed (genpipe.share): the controller restores the stage from it.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from genpipe.errors import GenpipeError
from pipelines.checkout import cache_root, workspace

TAIL_CHARS = 6000


class StageError(GenpipeError):
    """The stage failed on this worker; the message has the host and the command's output."""


def configure(ws: Path, params: str, lock: str) -> None:
    """The controller's params.yaml and dvc.lock; the DVC remote of the worker's environment
    (GENPIPE_DVC_REMOTE_URL, _KEYFILE) and the worker's one DVC cache, in .dvc/config.local."""
    from dvc.config import Config

    (ws / "params.yaml").write_text(params)
    (ws / "dvc.lock").unlink(missing_ok=True)
    if lock:  # none when no stage has run yet
        (ws / "dvc.lock").write_text(lock)
    with Config(dvc_dir=str(ws / ".dvc")).edit("local") as local:
        local.setdefault("cache", {})["dir"] = str(cache_root() / "dvc-cache")
        if url := os.environ.get("GENPIPE_DVC_REMOTE_URL"):
            key = os.environ.get("GENPIPE_DVC_REMOTE_KEYFILE")
            local["remote"]["genpipe-worker"] = {"url": url, **({"keyfile": key} if key else {})}
            local["core"]["remote"] = "genpipe-worker"
    if not Config(dvc_dir=str(ws / ".dvc"))["core"].get("remote"):
        raise StageError("this worker has no DVC remote: set GENPIPE_DVC_REMOTE_URL (and _KEYFILE) "
                         "from `make -s services-env` on the services host, restart the worker")  # fmt: skip


@task(task_run_name="pull inputs of {stage}", cache_policy=NO_CACHE)
def pull_inputs(ws: Path, stage: str) -> None:
    """The upstream stages' outputs as the controller's dvc.lock names them; git-tracked ones
    (metrics, plot tables: `cache: false`) from their objects on the remote too."""
    from dvc.repo import Repo

    with Repo(str(ws)) as repo:
        [node] = repo.stage.collect(stage)
        if upstream := list(repo.index.graph.successors(node)):
            repo.pull(targets=[u.addressing for u in upstream])
        for out in (o for u in upstream for o in u.outs if not o.use_cache and o.hash_info):
            repo.cloud.pull([out.hash_info])
            shutil.copyfile(repo.cache.local.oid_to_path(out.hash_info.value), out.fs_path)


@task(task_run_name="dvc repro {stage}", cache_policy=NO_CACHE)
def reproduce(ws: Path, stage: str, env: dict[str, str]) -> str:
    """`dvc repro --single-item stage` through DVC's API; the command's output goes to the log,
    and into the error when it fails. Any way out stops the command's processes too."""
    from dvc.repo import Repo

    with Repo(str(ws)) as repo, _captured() as output:
        try:
            ran = repo.reproduce(stage, single_item=True, run_env=env)
        except BaseException as exc:
            _stop_children()  # e.g. cancelled (past its budget): the worker signals this process
            if not isinstance(exc, Exception):
                raise
            cause = f"{exc}: {exc.__cause__}" if exc.__cause__ else str(exc)
            raise StageError(f"{cause}; last lines:\n{output()[-TAIL_CHARS:]}") from None
        text = output()
    get_run_logger().info("%s", text[-TAIL_CHARS:])
    return "ran" if ran else "skipped"


def _stop_children(grace_seconds: float = 10.0) -> None:
    import psutil

    children = psutil.Process().children(recursive=True)
    for child in children:
        child.terminate()
    for child in psutil.wait_procs(children, timeout=grace_seconds)[1]:
        child.kill()


@contextmanager
def _captured() -> Iterator[Callable[[], str]]:
    """This process's stdout and stderr, so the stage command's, into a temporary file; yields
    a function that reads what came so far."""
    with tempfile.TemporaryFile() as sink:
        fd, saved = sink.fileno(), (os.dup(1), os.dup(2))
        sys.stdout.flush(), sys.stderr.flush()
        os.dup2(fd, 1), os.dup2(fd, 2)
        try:
            yield lambda: os.pread(fd, os.fstat(fd).st_size, 0).decode(errors="replace")
        finally:
            sys.stdout.flush(), sys.stderr.flush()
            os.dup2(saved[0], 1), os.dup2(saved[1], 2)
            os.close(saved[0]), os.close(saved[1])


@task(task_run_name="push outputs of {stage}", cache_policy=NO_CACHE)
def push_outputs(ws: Path, stage: str) -> None:
    from genpipe import share

    share.push(ws, [stage])


@flow(name="genpipe-stage", log_prints=True)
def genpipe_stage(
    stage: str, commit: str, params: str, lock: str, pipeline_run_id: str
) -> dict[str, str]:
    """Run one stage of the commit in the working directory (the commit's folder); push it."""
    from genpipe.settings import get_settings

    folder, host = Path.cwd(), get_settings().host
    if folder.name != commit:
        raise StageError(f"the working directory {folder} is not commit {commit}'s folder")
    path = os.pathsep.join([str(folder / "venv" / "bin"), os.environ.get("PATH", "")])
    with workspace(folder) as ws:
        os.chdir(ws)  # DVC reads stage names from here; this process runs only this stage
        configure(ws, params, lock)
        pull_inputs(ws, stage)
        try:
            outcome = reproduce(
                ws, stage, {"PATH": path, "GENPIPE_PIPELINE_RUN_ID": pipeline_run_id}
            )
        except StageError as exc:
            raise StageError(f"[host {host}] stage {stage}: {exc}") from None
        push_outputs(ws, stage)
    print(f"stage {stage} {outcome} on {host} in {ws}")
    return {"stage": stage, "host": host, "outcome": outcome}
