"""The `genpipe-stage` flow: one DVC stage on a worker, in one process, with DVC's Python API.

Deployed per work pool from prefect.yaml; the pipeline flow dispatches it (pipelines/dispatch.py).
Its pull step (pipelines.checkout.commit_checkout) makes the working directory the flow run's
commit folder. Here, in a free workspace of that commit: the controller's params.yaml and dvc.lock
are written, the outputs of the upstream stages pulled from the DVC remote, the stage reproduced
(its command runs the commit's installed genpipe), then its outputs pushed and after them its run
record (genpipe.share), from which the controller restores the stage.
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

REMOTE = "genpipe-worker"  # the DVC remote's name in a workspace's .dvc/config.local
TAIL_CHARS = 6000


class StageError(GenpipeError):
    """The stage failed on this worker; the message has the host and the command's output."""


def configure(ws: Path, params: str, lock: str) -> None:
    """The controller's params.yaml and dvc.lock; the DVC remote from the worker's environment
    (GENPIPE_DVC_REMOTE_URL, _KEYFILE) and the worker's shared DVC cache."""
    from dvc.config import Config

    (ws / "params.yaml").write_text(params)
    (ws / "dvc.lock").unlink(missing_ok=True)
    if lock:
        (ws / "dvc.lock").write_text(lock)
    config = Config(dvc_dir=str(ws / ".dvc"))
    with config.edit("local") as local:
        local.setdefault("cache", {})["dir"] = str(cache_root() / "dvc-cache")
        if url := os.environ.get("GENPIPE_DVC_REMOTE_URL"):
            entry = {"url": url}
            if key := os.environ.get("GENPIPE_DVC_REMOTE_KEYFILE"):
                entry["keyfile"] = key
            local["remote"][REMOTE] = entry
            local["core"]["remote"] = REMOTE
    if not Config(dvc_dir=str(ws / ".dvc"))["core"].get("remote"):
        raise StageError(
            "this worker has no DVC remote: set GENPIPE_DVC_REMOTE_URL (and "
            "GENPIPE_DVC_REMOTE_KEYFILE) from `make -s services-env` on the services host, "
            "then restart the worker"
        )


@task(task_run_name="pull inputs of {stage}", cache_policy=NO_CACHE)
def pull_inputs(ws: Path, stage: str) -> None:
    """The outputs of the stages `stage` depends on, as the controller's dvc.lock names them;
    git-tracked ones (metrics, plots: `cache: false`) from their objects on the remote too."""
    from dvc.repo import Repo

    with Repo(str(ws)) as repo:
        [node] = repo.stage.collect(stage)
        upstream = list(repo.index.graph.successors(node))
        if upstream:
            repo.pull(targets=[u.addressing for u in upstream])
        for out in (o for u in upstream for o in u.outs if not o.use_cache and o.hash_info):
            repo.cloud.pull([out.hash_info])
            shutil.copyfile(repo.cache.local.oid_to_path(out.hash_info.value), out.fs_path)


@task(task_run_name="dvc repro {stage}", cache_policy=NO_CACHE)
def reproduce(ws: Path, stage: str, env: dict[str, str]) -> str:
    """`dvc repro --single-item stage` through DVC's API; the command's output goes to the log,
    and into the error when it fails."""
    from dvc.repo import Repo

    with Repo(str(ws)) as repo, _captured() as output:
        try:
            ran = repo.reproduce(stage, single_item=True, run_env=env)
        except BaseException as exc:
            _stop_children()  # a cancelled run (its budget spent) stops the command too
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
    """This process's stdout and stderr, and so the stage command's, into a temporary file;
    yields a function that reads what came so far."""
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
    """Run one stage of the commit in the working directory's commit folder; push its results."""
    from genpipe.settings import get_settings

    folder = Path.cwd()
    if folder.name != commit:
        raise StageError(f"the working directory {folder} is not commit {commit}'s folder")
    host = get_settings().host
    env = {
        "PATH": os.pathsep.join([str(folder / "venv" / "bin"), os.environ.get("PATH", "")]),
        "GENPIPE_PIPELINE_RUN_ID": pipeline_run_id,
    }
    with workspace(folder) as ws:
        os.chdir(ws)  # DVC reads stage names relative to it; this process runs only this stage
        configure(ws, params, lock)
        pull_inputs(ws, stage)
        try:
            outcome = reproduce(ws, stage, env)
        except StageError as exc:
            raise StageError(f"[host {host}] stage {stage}: {exc}") from None
        push_outputs(ws, stage)
    print(f"stage {stage} {outcome} on {host} in {ws}")
    return {"stage": stage, "host": host, "outcome": outcome}
