"""One stage in a checkout, through DVC's Python API in this process: `settle` does what `dvc repro`
would unless that means running the command; `run` runs it as `dvc repro` does, the command in
its own process group (a timeout stops it too). DVC locks its repo only to hash and write
dvc.lock, and its read/write lock guards each stage's paths: stages run at once."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from genpipe.errors import GenpipeError

Outcome = Literal["ran", "skipped", "restored"]
TAIL_CHARS = 4000


class StageFailed(GenpipeError):
    """A stage's command failed or ran out of time; the message says which and why."""

    def __init__(self, stage: str, message: str, output: str = "") -> None:
        super().__init__(message)
        self.stage, self.output = stage, output


@dataclass(frozen=True)
class StageResult:
    """What happened to one stage, and when (seconds since the epoch); `dvc_started` is False
    for a stage the flow skipped on the plan alone."""

    stage: str
    outcome: Outcome
    started: float
    finished: float
    output: str = ""
    dvc_started: bool = True
    host: str | None = None  # a dispatched stage's worker (None: this host)
    timings: Mapping[str, float] = field(default_factory=dict)  # a dispatched stage's phases

    @property
    def seconds(self) -> float:
        return self.finished - self.started


def settle(project: Path, name: str, pull: bool = False) -> Outcome | None:
    """The outcome when DVC needs no run of the command (`pull`: records and outputs from the
    DVC remote too); None when it does."""
    from dvc.repo import Repo, lock_repo
    from dvc.stage.cache import RunCacheNotFoundError

    with Repo(str(project), _wait_for_lock=True) as repo, lock_repo(repo):
        [stage] = repo.stage.collect(name)
        if not stage.changed():
            return "skipped"
        if pull:
            fetch_run_records(repo, stage)
            repo._reset()  # a fresh stage: the fetch hashed its deps into this one
            [stage] = repo.stage.collect(name)
        stage.remove_outs(ignore_remove=False, force=False)  # as `dvc repro` does first
        try:
            repo.stage_cache.restore(stage, pull=pull)
        except RunCacheNotFoundError:
            return None
        stage.save()
        stage.commit()
        stage.dump(update_pipeline=False)
    return "restored"


def fetch_run_records(repo: Any, stage: Any) -> None:
    """The DVC remote's run records for this stage's inputs (its run-cache key) only, where
    `dvc pull --run-cache` would fetch every record."""
    from dvc.stage.cache import _can_hash, _get_stage_hash

    if not _can_hash(stage):
        return
    stage.save_deps()
    key = _get_stage_hash(stage)
    odb = repo.cloud.get_remote_odb(None, "fetch --run-cache", hash_name="md5-dos2unix")
    local = Path(repo.stage_cache._get_cache_dir(key))
    try:
        found = list(odb.fs.find(odb.fs.join(odb.path, "runs", key[:2], key)))
    except FileNotFoundError:
        return
    for path in found:
        if not (local / odb.fs.name(path)).exists():
            local.mkdir(parents=True, exist_ok=True)
            odb.fs.get_file(path, str(local / odb.fs.name(path)))


def run(project: Path, name: str, env: Mapping[str, str], timeout: float | None) -> StageResult:
    """Run one stage as `dvc repro` does (DVC's `Stage.run`: its locks, then save, commit, dump),
    but its command in its own process group with its output captured; StageFailed on a non-zero
    exit or after `timeout` seconds (None: no limit). Any way out stops the command's group."""
    from dvc.repo import Repo, lock_repo
    from dvc.stage.decorators import rwlocked, unlocked_repo
    from dvc.stage.run import prepare_kwargs

    started = time.time()
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    with Repo(str(project), _wait_for_lock=True) as repo, lock_repo(repo):
        [stage] = repo.stage.collect(name)
        stage.remove_outs(ignore_remove=False, force=False)
        stage.save_deps()
        kwargs = prepare_kwargs(stage, run_env={"PATH": path, **env})
        commands = rwlocked(read=["deps"], write=["outs"])(unlocked_repo(_commands))
        output = commands(stage, kwargs, timeout)
        # DVC's Stage.run: a non-metric `cache: false` output keeps the stage out of the run-cache
        # (StageCache.save itself skips a stage with a persisted output)
        uncached = any(not o.use_cache for o in stage.outs if not (o.is_metric or o.is_plot))
        stage.save(run_cache=not uncached)
        stage.commit()
        stage.dump(update_pipeline=False)
    return StageResult(name, "ran", started, time.time(), output)


def _commands(stage: Any, kwargs: dict[str, Any], timeout: float | None) -> str:
    from dvc.stage.run import _make_cmd, get_executable

    name, output = stage.addressing, ""
    deadline = None if timeout is None else time.monotonic() + timeout
    for cmd in stage.cmd if isinstance(stage.cmd, list) else stage.cmd.splitlines():
        proc = subprocess.Popen(_make_cmd(get_executable(), cmd), **kwargs, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
        try:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            output += proc.communicate(timeout=left)[0]
        except subprocess.TimeoutExpired:
            output += _stop_group(proc)
            raise StageFailed(name, f"stage '{name}' timed out after {timeout:g} s and was "
                              f"stopped; raise its timeout (-S '++orchestration.timeouts.{name}"
                              f"=SECONDS', or in params.yaml) or shrink its params.\n"
                              f"{output[-TAIL_CHARS:]}", output) from None  # fmt: skip
        except BaseException:
            _stop_group(proc, grace_seconds=5.0)
            raise
        if proc.returncode != 0:
            raise StageFailed(name, f"stage '{name}' failed (`{cmd}` exit {proc.returncode}); "
                              f"last lines of its output:\n{output[-TAIL_CHARS:]}", output)  # fmt: skip
    return output


def _stop_group(proc: subprocess.Popen[str], grace_seconds: float = 10.0) -> str:
    """SIGTERM the child's process group, then SIGKILL it if it has not exited in time."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            return proc.communicate(timeout=grace_seconds)[0] or ""
        os.killpg(proc.pid, signal.SIGKILL)
    return proc.communicate()[0] or ""
