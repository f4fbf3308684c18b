"""Run one DVC stage as a subprocess: DVC, not the flow, decides whether the stage is skipped.

Each stage runs as `dvc --wait-for-lock repro --single-item <stage>`. The flow orders the stages,
so `--single-item` keeps DVC from re-walking the upstream graph in every task. DVC holds its repo
lock only while it hashes and commits; it releases it while the stage command runs
(`dvc.stage.decorators.unlocked_repo`) and guards the stage's paths with its read/write lock
(`.dvc/tmp/rwlock`). Two stages with disjoint outputs (train_vae, train_gan) therefore train at
the same time; `--wait-for-lock` makes the short locked phases queue instead of failing.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from genpipe.errors import GenpipeError

log = logging.getLogger(__name__)

Outcome = Literal["ran", "skipped", "restored"]
_TAIL_LINES = 25


class StageFailed(GenpipeError):
    """`dvc repro` of a stage exited non-zero or timed out; the message says which and why."""

    def __init__(self, stage: str, message: str, output: str = "") -> None:
        super().__init__(message)
        self.stage = stage
        self.output = output


@dataclass(frozen=True)
class StageResult:
    """What DVC did with one stage, and when (wall-clock seconds since the epoch).

    `dvc_started` is False for a stage the flow skipped on DVC's status taken before the run.
    """

    stage: str
    outcome: Outcome
    started: float
    finished: float
    output: str
    dvc_started: bool = True
    host: str | None = None  # a dispatched stage: the worker host that ran it (None: this host)
    timings: Mapping[str, float] = field(default_factory=dict)  # a dispatched stage's phases, s

    @property
    def seconds(self) -> float:
        return self.finished - self.started


def dvc_command(stage: str, pull: bool = False) -> list[str]:
    """The DVC invocation for one stage (the same interpreter, so the venv's dvc is used).

    `pull` (a worker, pipelines/stage_worker.py): fetch the run-cache and missing dependencies from
    the DVC remote first, and restore the stage from the run-cache when someone already ran it.
    """
    return [
        sys.executable, "-m", "dvc", "--wait-for-lock", "repro", *(["--pull"] if pull else []),
        "--single-item", stage,
    ]  # fmt: skip


def stage_env(extra: Mapping[str, str]) -> dict[str, str]:
    """The flow's environment plus `extra`, with this interpreter's bin/ first on PATH.

    Stage commands in dvc.yaml call `python -m genpipe.stages...`; a worker started without the
    venv activated must still run them with the interpreter that has genpipe installed.
    """
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    return {**os.environ, "PATH": path, **extra}


def classify(stage: str, output: str) -> Outcome:
    """Read DVC's log to tell a real run from a skip or a run-cache restore."""
    if f"Running stage '{stage}'" in output:
        return "ran"
    if f"Stage '{stage}' is cached" in output:
        return "restored"
    if f"Stage '{stage}' didn't change" in output:
        return "skipped"
    raise StageFailed(stage, f"could not tell from DVC's output what happened to stage '{stage}'")


def run_stage(
    project: Path,
    stage: str,
    env: Mapping[str, str],
    timeout_seconds: float,
    pull: bool = False,
) -> StageResult:
    """Run `dvc repro` for one stage in `project`; raise StageFailed on error or timeout.

    The child gets its own process group so a timeout stops DVC and the stage command it spawned,
    not only the DVC parent; so does any other way out of this call (a signal that ends the flow
    run, Ctrl-C), so no stage keeps running unwatched.
    """
    started = time.time()
    proc = subprocess.Popen(
        dvc_command(stage, pull),
        cwd=project,
        env=stage_env(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        output, _ = proc.communicate(timeout=timeout_seconds)
    except subprocess.TimeoutExpired:
        output = _stop_group(proc)
        raise StageFailed(
            stage,
            f"stage '{stage}' timed out after {timeout_seconds:g} s and was stopped; raise its "
            f"timeout (flow parameter stage_timeouts['{stage}']) or shrink its params.\n"
            f"{_tail(output)}",
            output,
        ) from None
    except BaseException:
        _stop_group(proc, grace_seconds=5.0)
        raise
    finished = time.time()
    if proc.returncode != 0:
        raise StageFailed(
            stage,
            f"stage '{stage}' failed (`dvc repro` exit {proc.returncode}) in {project}; "
            f"last lines of its output:\n{_tail(output)}",
            output,
        )
    outcome = classify(stage, output)
    log.info("stage %s: %s in %.1f s", stage, outcome, finished - started)
    return StageResult(stage, outcome, started, finished, output)


def _stop_group(proc: subprocess.Popen[str], grace_seconds: float = 10.0) -> str:
    """SIGTERM the child's process group, then SIGKILL it if it has not exited in time."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            output, _ = proc.communicate(timeout=grace_seconds)
            return output or ""
        except subprocess.TimeoutExpired:
            continue
    output, _ = proc.communicate()
    return output or ""


def _tail(output: str) -> str:
    lines = [line for line in output.splitlines() if line.strip()]
    return "\n".join("    " + line for line in lines[-_TAIL_LINES:])
