"""A worker's copies of the commits it runs, kept per commit: a warm worker fetches nothing.

In the worker's cache (~/.cache/genpipe/worker): `mirror.git`, a mirror of the code remote fetched
only when a commit is missing; `commits/<sha>/ws0, ws1...`, `git worktree`s of the commit, one per
stage run at a time (`workspace`), ws0 made first; `commits/<sha>/venv`, the commit's genpipe
installed from ws0 (`pip install -e`, no dependencies) in a venv that reuses the worker venv's
packages, so a stage command runs the commit's code, never the worker checkout's; `dvc-cache`,
one DVC cache for all. `commit_checkout` is the stage deployments' pull step (prefect.yaml).
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout

from genpipe.errors import GenpipeError

COMMIT_VAR, REMOTE_VAR = "GENPIPE_COMMIT", "GENPIPE_CODE_REMOTE"  # set per run by the controller


class CheckoutError(GenpipeError):
    """The worker cannot get or install the flow run's commit."""


def cache_root() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "genpipe" / "worker"


def _git(*args: str | Path, check: bool = True) -> bool:
    done = subprocess.run(["git", *map(str, args)], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "GIT_TERMINAL_PROMPT": "0"})  # fmt: skip
    if check and done.returncode != 0:
        raise CheckoutError(f"`git {' '.join(map(str, args))}` failed: {done.stderr.strip()}")
    return done.returncode == 0


def commit_checkout(repository: str, commit: str) -> dict[str, str]:
    """Prefect pull step: the commit's folder (fetched, checked out, installed on first use)."""
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    mirror, folder = root / "mirror.git", root / "commits" / commit
    with FileLock(root / ".lock"):
        if not (folder / "venv").exists():
            if not mirror.exists():
                _git("clone", "--quiet", "--mirror", repository, mirror)
            has = ("--git-dir", mirror, "cat-file", "-e", f"{commit}^{{commit}}")
            if not _git(*has, check=False):
                _git("--git-dir", mirror, "fetch", "--quiet", repository, "+refs/*:refs/*")
            if not _git(*has, check=False):
                raise CheckoutError(f"commit {commit} is not on {repository}: push it first")
            _install(mirror, folder, commit)
        os.utime(folder)  # the most recently used
        keep = _kept(folder / "ws0" / "params.yaml")
        for old in sorted(folder.parent.iterdir(), key=lambda p: -p.stat().st_mtime)[keep:]:
            if _unused(old):
                shutil.rmtree(old, ignore_errors=True)
        _git("--git-dir", mirror, "worktree", "prune")
    return {"directory": str(folder)}


def _install(mirror: Path, folder: Path, commit: str) -> None:
    """ws0 (a worktree of the commit), then a venv with the commit's genpipe installed from it."""
    shutil.rmtree(folder, ignore_errors=True)  # a half-made folder of a killed run
    _git("--git-dir", mirror, "worktree", "prune")
    _git("--git-dir", mirror, "worktree", "add", "--quiet", "--detach", folder / "ws0", commit)
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
        raise CheckoutError(f"installing commit {commit} failed:\n{done.stderr[-3000:]}")
    venv.rename(folder / "venv")  # the mark of a finished commit folder


def _kept(params: Path) -> int:
    from genpipe.config import load_params

    return load_params(params).orchestration.worker_commits_kept


def _unused(folder: Path) -> bool:
    """No stage run holds a workspace of this commit folder."""
    locks = [FileLock(p) for p in folder.glob("ws*.lock")]
    try:
        for lock in locks:
            lock.acquire(timeout=0)
        return True
    except Timeout:
        return False
    finally:
        for lock in locks:
            lock.release()


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
                _git("--git-dir", mirror, "worktree", "add", "--quiet", "--detach", ws, folder.name)
            yield ws
            return
        finally:
            lock.release()
