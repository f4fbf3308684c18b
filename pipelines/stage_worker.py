"""One dispatched stage, on a worker: the body of the `genpipe-stage` flow (pipelines/stage_flow.py).

The worker's flow-run process starts in a fresh clone of the flow run's commit (the deployment's
pull step). Here, in that clone:
1. check the clone is the commit the controller sent, and that this process (stage_flow.use_clone)
   and every process it starts import the clone's genpipe (PYTHONPATH=<clone>/src), not the
   worker venv's own checkout;
2. point the clone at the DVC remote (GENPIPE_DVC_REMOTE_URL and _KEYFILE from the worker's
   environment, in .dvc/config.local), apply the controller's parameter overrides (checked
   against the hash of the controller's params) and write the controller's dvc.lock;
3. `dvc pull` the upstream outputs the stage reads, as that dvc.lock names them;
4. `dvc repro --pull --single-item <stage>` (DVC may restore it from the team's run-cache);
5. push the outputs, then the run record; return the stage's dvc.lock entry and its git-tracked
   outputs (metrics, plot tables), which the controller accepts (pipelines/dvc_sync.py accept).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from genpipe.errors import GenpipeError

MAX_FILE_BYTES = 2_000_000  # git-tracked outputs travel in the result; they are small by nature


class WorkerSetupError(GenpipeError):
    """The worker cannot run the stage: wrong commit, no DVC remote, params that do not match."""


@dataclass(frozen=True)
class StageRequest:
    """What the controller sends with a stage (the child flow's parameters)."""

    stage: str
    commit: str
    overrides: Sequence[str]  # key=value against the commit's params.yaml
    params_sha256: str  # of the controller's params, to check the overrides reproduce them
    lock: Mapping[str, Any]  # the controller's dvc.lock, as read when the stage was sent
    pull: Sequence[str]  # upstream output paths the stage reads
    uncached: Sequence[str]  # the stage's git-tracked outputs, returned as text
    pipeline_run_id: str
    timeout_seconds: float


def params_sha256(params: Mapping[str, Any]) -> str:
    """A hash of params.yaml's values (not its comments or layout): what DVC's tracking sees."""
    return hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()


def clone_env(clone: Path, environ: Mapping[str, str]) -> dict[str, str]:
    """The environment of every process started in the clone: the clone's code first."""
    paths = [str(clone / "src"), str(clone), environ.get("PYTHONPATH", "")]
    return {**environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p)}


def check_commit(clone: Path, commit: str) -> None:
    head = subprocess.run(
        ["git", "-C", str(clone), "rev-parse", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    if head != commit:
        raise WorkerSetupError(f"the clone {clone} is at {head or 'no commit'}, not {commit}")


def configure_remote(clone: Path, environ: Mapping[str, str]) -> str:
    """The DVC remote from the worker's environment, as the clone's default (.dvc/config.local).

    Without GENPIPE_DVC_REMOTE_URL the committed .dvc/config must name a default remote.
    """
    from dvc.config import Config

    url = environ.get("GENPIPE_DVC_REMOTE_URL")
    config = Config(dvc_dir=str(clone / ".dvc"))
    if not url:
        remote = config["core"].get("remote")
        if not remote:
            raise WorkerSetupError(
                "this worker has no DVC remote: set GENPIPE_DVC_REMOTE_URL (and "
                "GENPIPE_DVC_REMOTE_KEYFILE) from `make -s services-env` on the services host, "
                "or commit a default remote (dvc remote add -d ...), then restart the worker"
            )
        return str(remote)
    with config.edit("local") as local:
        entry = {"url": url}
        if key := environ.get("GENPIPE_DVC_REMOTE_KEYFILE"):
            entry["keyfile"] = key
        local["remote"]["genpipe-worker"] = entry
        local["core"]["remote"] = "genpipe-worker"
    return url


def apply_params(clone: Path, overrides: Sequence[str], expected_sha256: str) -> None:
    """The controller's params: its overrides applied to the commit's params.yaml, then checked."""
    from pipelines.params_overrides import apply_overrides

    path = clone / "params.yaml"
    apply_overrides(path, list(overrides))
    got = params_sha256(yaml.safe_load(path.read_text()) or {})
    if got != expected_sha256:
        raise WorkerSetupError(
            f"params.yaml in the clone differs from the controller's after the overrides "
            f"{list(overrides)}: the overrides do not reproduce it"
        )


def write_lock(clone: Path, lock: Mapping[str, Any]) -> None:
    path = clone / "dvc.lock"
    if not lock:
        path.unlink(missing_ok=True)
        return
    tmp = path.with_name(".dvc.lock.genpipe")
    tmp.write_text(yaml.safe_dump(dict(lock), sort_keys=False))
    tmp.replace(path)


def read_outputs(clone: Path, stage: str, uncached: Sequence[str]) -> tuple[dict, dict[str, str]]:
    """The stage's dvc.lock entry and its git-tracked output files (text)."""
    lock = yaml.safe_load((clone / "dvc.lock").read_text()) or {}
    entry = (lock.get("stages") or {}).get(stage)
    if entry is None:
        raise WorkerSetupError(f"dvc.lock in {clone} has no entry for stage {stage} after the run")
    files = {}
    for rel in uncached:
        path = clone / rel
        if path.is_dir():
            raise WorkerSetupError(f"stage {stage}: git-tracked output {rel} is a folder")
        if path.stat().st_size > MAX_FILE_BYTES:
            raise WorkerSetupError(f"stage {stage}: git-tracked output {rel} is over 2 MB")
        files[rel] = path.read_text()
    return entry, files


def run(clone: Path, request: StageRequest, environ: Mapping[str, str]) -> dict[str, Any]:
    """Steps 2-5 of the module doc (step 1 is the flow's); returns the result for the controller."""
    from genpipe.settings import get_settings
    from pipelines import dvc_runner, dvc_sync

    host = get_settings().host
    timings: dict[str, float] = {}
    t0 = time.monotonic()
    deadline = t0 + request.timeout_seconds  # one budget for the pull, the run and the push

    def left() -> float:
        if (remaining := deadline - time.monotonic()) <= 0:
            raise dvc_runner.StageFailed(
                request.stage,
                f"[host {host}] stage '{request.stage}' ran out of its {request.timeout_seconds:g}"
                " s timeout (pull, run and push together)",
            )
        return remaining

    check_commit(clone, request.commit)
    configure_remote(clone, environ)
    apply_params(clone, request.overrides, request.params_sha256)
    write_lock(clone, request.lock)
    env = clone_env(clone, environ)
    timings["setup"] = time.monotonic() - t0

    t0 = time.monotonic()
    fetched = 0
    if request.pull:
        fetched = dvc_sync.call(clone, "pull", request.pull, env, left())["fetched"]
    timings["pull"] = time.monotonic() - t0

    stage_env = {**env, "GENPIPE_PIPELINE_RUN_ID": request.pipeline_run_id}
    try:
        result = dvc_runner.run_stage(clone, request.stage, stage_env, left(), pull=True)
    except dvc_runner.StageFailed as exc:
        raise dvc_runner.StageFailed(request.stage, f"[host {host}] {exc}", exc.output) from None
    timings["repro"] = result.seconds

    t0 = time.monotonic()
    entry, files = None, {}
    if result.outcome != "skipped":
        dvc_sync.call(clone, "push", [request.stage], env, left(), run_cache=True)
        entry, files = read_outputs(clone, request.stage, request.uncached)
    timings["push"] = time.monotonic() - t0
    return {
        "stage": request.stage,
        "host": host,
        "commit": request.commit,
        "outcome": result.outcome,
        "started": result.started,
        "finished": result.finished,
        "entry": entry,
        "files": files,
        "fetched": fetched,
        "timings": timings,
        "output": result.output[-6000:],
    }
