"""A worker's copies of the commits it runs, kept per commit: a warm worker fetches nothing.

Under the worker's cache folder (~/.cache/genpipe/worker, or $XDG_CACHE_HOME's):
- `mirror.git`: a mirror of the code remote, fetched only when a commit is missing;
- `commits/<sha>/ws0, ws1, ...`: `git worktree`s of that commit, one per stage run at a time
  (`workspace` hands out a free one); ws0 is made first and stays pristine source;
- `commits/<sha>/venv`: the commit's genpipe *installed* (`pip install -e ws0`, no dependencies)
  into a venv that reuses the worker venv's packages, so a stage command (`python -m
  genpipe.stages...`) runs the commit's code, never the worker checkout's;
- `dvc-cache`: one DVC cache for every workspace, so inputs pulled once stay.
`commit_checkout` is the pull step of the `genpipe-stage` deployments (prefect.yaml): it makes
the commit's folder on first use and hands it to Prefect as the flow run's working directory.
The `worker_commits_kept` most recently used commits stay.
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
READY = ".ready"


class CheckoutError(GenpipeError):
    """The worker cannot get or install the flow run's commit."""


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "genpipe" / "worker"


def _git(*args: str | Path, timeout: float = 600) -> str:
    done = subprocess.run(
        ["git", *map(str, args)], capture_output=True, text=True, timeout=timeout,
        env={**os.environ, "GIT_TERMINAL_PROMPT": "0"},
    )  # fmt: skip
    if done.returncode != 0:
        raise CheckoutError(f"`git {' '.join(map(str, args))}` failed: {done.stderr.strip()}")
    return done.stdout.strip()


def commit_checkout(repository: str, commit: str) -> dict[str, str]:
    """Prefect pull step: the commit's folder (fetched, checked out, installed on first use)."""
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    mirror, folder = root / "mirror.git", root / "commits" / commit
    with FileLock(root / ".lock"):
        if not (folder / READY).exists():
            if not mirror.exists():
                _git("clone", "--quiet", "--mirror", repository, mirror)
            elif not _has(mirror, commit):
                _git("--git-dir", mirror, "fetch", "--quiet", "--prune", repository,
                     "+refs/heads/*:refs/heads/*")  # fmt: skip
            if not _has(mirror, commit):
                raise CheckoutError(f"commit {commit} is not on {repository}: push it first")
            _install(mirror, folder, commit)
        os.utime(folder)  # the newest used
        _prune(mirror, root / "commits", _kept(folder))
    return {"directory": str(folder)}


def _has(mirror: Path, commit: str) -> bool:
    return subprocess.run(
        ["git", "--git-dir", str(mirror), "cat-file", "-e", f"{commit}^{{commit}}"],
        capture_output=True,
    ).returncode == 0  # fmt: skip


def _install(mirror: Path, folder: Path, commit: str) -> None:
    """ws0 (a worktree of the commit) and a venv with the commit's genpipe installed from it."""
    shutil.rmtree(folder, ignore_errors=True)  # a half-made folder from a killed run
    _git("--git-dir", mirror, "worktree", "prune")
    _git("--git-dir", mirror, "worktree", "add", "--quiet", "--detach", folder / "ws0", commit)
    venv = folder / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = next((venv / "lib").glob("python*/site-packages"))
    # the worker venv's packages (torch, dvc, ...), as a plain path: its own editable genpipe,
    # which a .pth file there installs, stays out
    (site / "genpipe-worker-packages.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    done = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install",
         "--quiet", "--no-deps", "--no-build-isolation", "-e", str(folder / "ws0")],
        capture_output=True, text=True,
    )  # fmt: skip
    if done.returncode != 0:
        raise CheckoutError(f"installing commit {commit} failed:\n{done.stderr[-3000:]}")
    (folder / READY).touch()


def _kept(folder: Path) -> int:
    from genpipe.config import load_params

    return load_params(folder / "ws0" / "params.yaml").orchestration.worker_commits_kept


def _prune(mirror: Path, commits: Path, keep: int) -> None:
    """Remove the least recently used commit folders beyond `keep`, unless a run uses them."""
    folders = sorted(commits.iterdir(), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in folders[keep:]:
        locks = [FileLock(p) for p in old.glob("ws*.lock")]
        try:
            for lock in locks:
                lock.acquire(timeout=0)
        except Timeout:
            continue
        finally:
            for lock in locks:
                lock.release()
        shutil.rmtree(old, ignore_errors=True)
    _git("--git-dir", mirror, "worktree", "prune")


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
                _git("--git-dir", folder.parents[1] / "mirror.git", "worktree", "add", "--quiet",
                     "--detach", ws, folder.name)  # fmt: skip
            yield ws
            return
        finally:
            lock.release()
