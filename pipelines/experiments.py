"""The sweep's edge to DVC experiments: run a member, share it, and read what `dvc exp show` holds.

A member runs as `dvc exp run --temp`: its own process and its own temporary copy of the
workspace, so members run side by side without touching the workspace or each other, and a
failed member leaves nothing behind. `--wait-for-lock` makes DVC wait for the short moments
when another member holds the repository's lock (queueing its stash, saving its result)
instead of failing. A member run on a worker comes back with DVC's experiment sharing: `dvc exp
push` there (the git ref to the code remote, its outputs to the DVC remote), `dvc exp pull` here.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from genpipe.errors import GenpipeError
from genpipe.sweeps.plan import Member

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HeldExperiment:
    """A successful experiment of the current baseline, as `dvc exp show` has it."""

    name: str
    rev: str
    params: dict[str, Any]  # params.yaml
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)  # file -> its content


@dataclass(frozen=True)
class MemberRun:
    member: Member
    returncode: int
    started: float
    ended: float
    log_path: Path

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    @property
    def seconds(self) -> float:
        return self.ended - self.started


def baseline(root: Path) -> str:
    """The commit members branch off (HEAD when the sweep starts)."""
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        return repo.scm.get_rev()


def target_metrics(root: Path, target: str) -> set[str]:
    """The metrics files the target stage and its upstream write: the only ones a member's
    experiment holds fresh (the others are the baseline's, carried along by git)."""
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        stages = repo.stage.collect(target, with_deps=True)
        return {out.def_path for stage in stages for out in stage.outs if out.metric}


def held_experiments(root: Path, rev: str) -> dict[str, HeldExperiment]:
    """name -> experiment, for every finished experiment on `rev` (DVC's Python API)."""
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        states = repo.experiments.show(
            revs=[rev], num=1, hide_queued=True, hide_failed=True, hide_workspace=True
        )
    held: dict[str, HeldExperiment] = {}
    for baseline in states:
        for exp_range in baseline.experiments or []:
            executor = exp_range.executor
            if exp_range.name is None or (executor is not None and executor.state != "success"):
                continue  # running in another process, or not an experiment of ours
            tip = exp_range.revs[0]
            data = tip.data
            if data is None:
                continue
            held[exp_range.name] = HeldExperiment(
                exp_range.name,
                tip.rev,
                _file_data(data.params.get("params.yaml")),
                {path: _file_data(result) for path, result in data.metrics.items()},
            )
    return held


def _file_data(result: Mapping[str, Any] | None) -> dict[str, Any]:
    return dict((result or {}).get("data") or {})


def run_member(
    root: Path,
    member: Member,
    env: Mapping[str, str],
    log_path: Path,
    timeout: float,
    pull: bool = False,
) -> MemberRun:
    """`dvc exp run --temp -n <name> <target> -S ...` in its own process; its output to a log.
    `pull`: outputs missing from the cache come from the DVC remote (`--pull`), not rerun."""
    command = [
        str(Path(sys.executable).with_name("dvc")),
        "--wait-for-lock",
        "exp",
        "run",
        "--temp",
        *(["--pull"] if pull else []),
        "-n",
        member.name,
        member.target,
        *(arg for override in member.overrides for arg in ("-S", override)),
    ]
    log_path.parent.mkdir(parents=True, exist_ok=True)
    started = time.time()
    with log_path.open("w") as out:
        out.write("$ " + " ".join(command) + "\n")
        out.flush()
        try:
            code = subprocess.run(
                command,
                cwd=root,
                env={**os.environ, **env},
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=timeout,
                check=False,
            ).returncode
        except subprocess.TimeoutExpired:
            out.write(f"\ngenpipe sweep: no result within {timeout:.0f} s; stopped\n")
            code = -1
    return MemberRun(member, code, started, time.time(), log_path)


def exp_ref(baseline: str, name: str) -> str:
    """The git ref DVC keeps experiment `name` of commit `baseline` under."""
    from dvc.repo.experiments.refs import ExpRefInfo

    return str(ExpRefInfo(baseline, name))


def holds(root: Path, ref: str) -> bool:
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        return repo.scm.get_ref(ref) is not None


def push(root: Path, ref: str, git_remote: str) -> None:
    """`dvc exp push --force <git_remote> <ref>`: the ref, then its outputs (default remote).
    A ref there of the same name is the same member at the same commit, run again: replaced."""
    from dvc.repo import Repo

    with Repo(str(root), _wait_for_lock=True) as repo:
        done = repo.experiments.push(git_remote, [ref], force=True, push_cache=True)
    if ref.rsplit("/", 1)[-1] not in [*done.get("success", []), *done.get("up_to_date", [])]:
        raise GenpipeError(f"`dvc exp push {git_remote} {ref}` did not push it: {done}")


def pull(root: Path, ref: str, git_remote: str) -> None:
    """`dvc exp pull <git_remote> <ref>`: the ref, then its outputs into the cache."""
    from dvc.repo import Repo

    with Repo(str(root), _wait_for_lock=True) as repo:
        repo.experiments.pull(git_remote, [ref], pull_cache=True)
        if repo.scm.get_ref(ref) is None:
            raise GenpipeError(f"`dvc exp pull {git_remote} {ref}` brought no such experiment")


def member_env(run_id: str, cpu_share: int) -> dict[str, str]:
    """What a member's stages need from the controller: its MLflow store (the temporary copy has
    none of its own), the member's run (its stage runs nest under it and carry its id as their
    pipeline run id), and how many members share the cores."""
    from genpipe.settings import get_settings

    settings = get_settings()
    bin_dir = str(Path(sys.executable).parent)
    return {
        "GENPIPE_ROOT": "",  # the member's own temporary copy is its project root
        "MLFLOW_TRACKING_URI": settings.tracking_uri,
        "GENPIPE_ARTIFACT_ROOT": str(settings.artifact_root.resolve()),
        "GENPIPE_PIPELINE_RUN_ID": run_id,
        "GENPIPE_PARENT_RUN_ID": run_id,
        "GENPIPE_CPU_SHARE": str(cpu_share),
        "PATH": os.pathsep.join([bin_dir, os.environ.get("PATH", "")]),
    }


def tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""
