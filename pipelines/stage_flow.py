"""A dispatched stage on a worker: the pull step `commit_checkout`, then the `genpipe-stage` flow.

The pull step keeps each commit in the worker's cache once: a mirror, `git worktree`s (one per
stage run at a time) and the commit's genpipe installed (no dependencies) into a venv reusing the
worker's packages, so a stage command runs the commit's code. The flow pulls the inputs, runs
the stage as a local one runs (pipelines.dvc_stage), and pushes the outputs, then the run record.
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from genpipe import share
from genpipe.errors import GenpipeError
from pipelines import dvc_stage
from pipelines.code_remote import git

COMMIT_VAR, REMOTE_VAR = "GENPIPE_COMMIT", "GENPIPE_CODE_REMOTE"  # set per run by the controller
# the stage's outputs, then its run record, to the DVC remote
push_outputs = task(share.push, name="push", task_run_name="push {stages}", cache_policy=NO_CACHE)


def cache_root() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "genpipe" / "worker"


def commit_checkout(repository: str, commit: str) -> dict[str, str]:
    """Prefect pull step: the commit's folder (fetched, checked out, installed on first use)."""
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    mirror, folder = root / "mirror.git", root / "commits" / commit
    with FileLock(root / ".lock"):
        if not (folder / "venv").exists():
            if not mirror.exists():
                git(root, "clone", "--quiet", "--mirror", repository, str(mirror), timeout=600)
            has = ("cat-file", "-t", f"{commit}^{{commit}}")  # prints "commit" if it has it
            if not git(mirror, *has, check=False):
                git(mirror, "fetch", "--quiet", repository, "+refs/*:refs/*", timeout=600)
            if not git(mirror, *has, check=False):
                raise GenpipeError(f"commit {commit} is not on {repository}: push it first")
            _install(mirror, folder, commit)
        os.utime(folder)  # the most recently used; `make worker` says how many stay
        keep = int(os.environ.get("GENPIPE_WORKER_COMMITS_KEPT") or 0) or None
        for old in sorted(folder.parent.iterdir(), key=lambda p: -p.stat().st_mtime)[keep:]:
            if keep and _unused(old):
                shutil.rmtree(old, ignore_errors=True)
        git(mirror, "worktree", "prune")
    return {"directory": str(folder)}


def _install(mirror: Path, folder: Path, commit: str) -> None:
    """ws0 (a worktree of the commit), then a venv with the commit's genpipe installed from it."""
    shutil.rmtree(folder, ignore_errors=True)  # a half-made folder of a killed run
    git(mirror, "worktree", "prune")
    git(mirror, "worktree", "add", "--quiet", "--detach", str(folder / "ws0"), commit)
    venv = folder / "venv.new"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    # the worker venv's packages (torch, dvc...) as a plain path entry: the .pth file there that
    # installs the worker checkout's own genpipe is not run
    [site] = (venv / "lib").glob("python*/site-packages")
    (site / "genpipe-worker-packages.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    done = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install",
         "--quiet", "--no-deps", "--no-build-isolation", "-e", str(folder / "ws0")],
        capture_output=True, text=True,
    )  # fmt: skip
    if done.returncode != 0:
        raise GenpipeError(f"installing commit {commit} failed:\n{done.stderr[-3000:]}")
    venv.rename(folder / "venv")  # the mark of a finished commit folder


def _unused(folder: Path) -> bool:
    """No stage run holds a workspace of this commit folder."""
    with ExitStack() as held:
        try:
            for path in folder.glob("ws*.lock"):
                held.enter_context(FileLock(path).acquire(timeout=0))
        except Timeout:
            return False
        return True


@contextmanager
def workspace(folder: Path) -> Iterator[Path]:
    """A worktree of the folder's commit that no other stage run uses while this one holds it."""
    for n in itertools.count():
        ws, lock = folder / f"ws{n}", FileLock(folder / f"ws{n}.lock")
        try:
            lock.acquire(timeout=0)
        except Timeout:
            continue
        try:
            if not ws.exists():
                mirror = folder.parents[1] / "mirror.git"
                git(mirror, "worktree", "add", "--quiet", "--detach", str(ws), folder.name)
            yield ws
            return
        finally:
            lock.release()


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


@task(task_run_name="pull inputs of {stage}", cache_policy=NO_CACHE)
def pull_inputs(ws: Path, stage: str) -> None:
    """What the stage reads of its upstream stages' outputs (not the rest of them: validate's
    data docs stay behind), as the controller's dvc.lock names them: their objects from the DVC
    remote in one transfer, then checked out (git-tracked ones, `cache: false`, copied)."""
    from dvc.repo import Repo

    with Repo(str(ws)) as repo:
        [node], fs = repo.stage.collect(stage), repo.fs
        parts = {  # (output, the part of it a dep names) -> output; DVC's graph edges
            (out.fs_path, dep.fs_path if fs.isin_or_eq(dep.fs_path, out.fs_path) else out.fs_path): out
            for upstream in repo.index.stages
            if upstream.addressing != node.addressing
            for out in upstream.outs
            for dep in node.deps
            if out.hash_info and fs.overlaps(dep.fs_path, out.fs_path)
        }  # fmt: skip
        objects = {hi for (_, part), out in parts.items() for hi in _objects(out, part)}
        if failed := repo.cloud.pull(objects).failed:
            raise GenpipeError(f"stage {stage}: {len(failed)} input object(s) are not on the DVC "
                               f"remote ({sorted(map(str, failed))[:5]}): their push failed; run again")  # fmt: skip
        for (_, part), out in parts.items():
            if out.use_cache:
                out.checkout(filter_info=part, force=True)
            else:
                Path(part).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(repo.cache.local.oid_to_path(out.hash_info.value), part)


def _objects(out: Any, part: str) -> set[Any]:
    """The objects behind `part` of a DVC output (the whole of it, or a path inside its folder)."""
    from dvc_data.hashfile.tree import Tree

    if not out.is_dir_checksum:
        return {out.hash_info}
    out.get_dir_cache()  # its manifest, from the remote when the cache lacks it
    obj = out.get_obj(filter_info=part)
    if obj is None:
        raise GenpipeError(f"{part}: the manifest of {out} ({out.hash_info}) is not on the DVC "
                           "remote, or does not list it: its push failed; run again")  # fmt: skip
    found = {oid for _, _, oid in obj} if isinstance(obj, Tree) else {obj.hash_info}
    return found | ({out.hash_info} if part == out.fs_path else set())


@task(task_run_name="dvc repro {stage}", cache_policy=NO_CACHE)
def reproduce(ws: Path, stage: str, env: dict[str, str], host: str) -> str:
    """The stage as the controller runs a local one (pipelines.dvc_stage), with no deadline of
    its own: its budget automation cancels the run, and the cancelled run stops the command."""
    try:
        if outcome := dvc_stage.settle(ws, stage):
            return outcome
        output = dvc_stage.run(ws, stage, env, timeout=None).output
    except Exception as exc:
        cause = f"{exc}: {exc.__cause__}" if exc.__cause__ else str(exc)
        raise GenpipeError(f"[host {host}] stage {stage}: {cause}") from None
    get_run_logger().info("%s", output[-dvc_stage.TAIL_CHARS :])
    return "ran"


@flow(name="genpipe-stage", log_prints=True)
def genpipe_stage(
    stage: str, commit: str, params: str, lock: str, pipeline_run_id: str
) -> dict[str, str]:
    """Run one stage of the commit in the working directory (the commit's folder); push it."""
    from genpipe.settings import get_settings

    folder, host = Path.cwd(), get_settings().host  # the pull step's commit folder
    path = os.pathsep.join([str(folder / "venv" / "bin"), os.environ.get("PATH", "")])
    with workspace(folder) as ws:
        os.chdir(ws)  # DVC reads stage names from here; this process runs only this stage
        configure(ws, params, lock)
        pull_inputs(ws, stage)
        env = {"PATH": path, "GENPIPE_PIPELINE_RUN_ID": pipeline_run_id}
        outcome = reproduce(ws, stage, env, host)
        push_outputs(ws, [stage])
    print(f"stage {stage} {outcome} on {host} in {ws}")
    return {"stage": stage, "host": host, "outcome": outcome}
