"""Moving a dispatched stage's data through the DVC remote, with DVC's API in a helper process.

`python -m pipelines.dvc_sync pull|push|accept --project DIR ...` keeps DVC's imports (about a
second) out of the flow's processes, and does one command's DVC work with one import.

- `pull TARGETS`: a worker fetches and checks out the upstream outputs a stage reads.
- `push STAGE [--run-cache]`: the stage's outputs to the remote, then (with --run-cache) the run
  records, in that order, so a run record on the remote always has its outputs there. The
  controller pushes the outputs a worker will need; a worker pushes what it produced.
- `snapshot [STAGES]` (controller): push those stages' outputs, read dvc.lock, under DVC's lock.
- `accept STAGE` (controller; JSON on stdin: {"entry": <the worker's dvc.lock entry>, "files":
  {path: text}}): take a worker's result as the controller's own. Under DVC's repo lock it writes
  the git-tracked outputs (metrics, plot tables: `cache: false`, so not on the remote) and the
  lock entry into dvc.lock, checks the outputs out of the remote (`dvc pull STAGE`), then asks
  DVC's status: the stage must now be up to date here. A worker that ran other code, params or
  inputs fails that check, and the flow fails saying so; nothing on the controller runs the stage.

Why the lock entry and not the run-cache for the controller: the run-cache returns the newest
record for a stage's inputs, so a late push from a worker the flow had given up on (a partitioned
host that came back) could win over the result the flow accepted; and when a record's outputs
are missing, `dvc repro` quietly runs the stage instead. The lock entry names exactly the
accepted run's outputs, and `dvc pull` never runs anything. Workers still push the run-cache, so a
later `dvc repro --pull` anywhere in the team restores the stage instead of rerunning it.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from genpipe.errors import GenpipeError

log = logging.getLogger(__name__)

ALWAYS_CHANGED = "always changed"  # what DVC's status says of an always_changed stage


class SyncError(GenpipeError):
    """DVC could not move a stage's data, or a worker's result does not fit the controller."""


def pull(project: Path, targets: Sequence[str]) -> dict[str, Any]:
    """`dvc pull TARGETS`: fetch and check out those outputs as dvc.lock describes them."""
    from dvc.repo import Repo

    with Repo(str(project), _wait_for_lock=True) as repo:
        stats = repo.pull(targets=list(targets))
    return {"fetched": stats["stats"]["fetched"]}


def push(project: Path, stages: Sequence[str], run_cache: bool) -> dict[str, Any]:
    """`dvc push STAGES`, then `dvc push --run-cache`: outputs first, then the run records.

    With the run records go the objects of the stages' git-tracked outputs (metrics, plot
    tables), which `dvc push` skips: a run record restores its stage only where every output's
    object is on the remote, and without them `dvc repro --pull` elsewhere reruns the stage.
    """
    from dvc.repo import Repo

    with Repo(str(project), _wait_for_lock=True) as repo:
        pushed = repo.push(targets=list(stages))
        records = 0
        if run_cache:
            uncached = {
                out.hash_info
                for name in stages
                for stage in repo.stage.collect(name)
                for out in stage.outs
                if not out.use_cache and out.hash_info
            }
            if uncached:
                pushed += len(repo.cloud.push(uncached).transferred)
            records = repo.push(targets=list(stages), run_cache=True)
    return {"pushed": pushed, "run_cache": records}


def snapshot(project: Path, stages: Sequence[str]) -> dict[str, Any]:
    """Under DVC's repo lock: push `stages`' outputs (if any), then read dvc.lock whole.

    The controller sends this dvc.lock with a stage, so the worker pulls the upstream outputs as
    the controller has them; the lock keeps a concurrent `dvc repro` from writing it meanwhile.
    """
    import yaml
    from dvc.repo import Repo, lock_repo

    with Repo(str(project), _wait_for_lock=True) as repo, lock_repo(repo):
        pushed = repo.push(targets=list(stages)) if stages else 0
        path = project / "dvc.lock"
        lock = (yaml.safe_load(path.read_text()) or {}) if path.exists() else {}
    return {"lock": lock, "pushed": pushed}


def accept(
    project: Path, stage: str, entry: Mapping[str, Any], files: Mapping[str, str]
) -> dict[str, Any]:
    """Make `entry` (a worker's dvc.lock entry for `stage`) this checkout's; see the module doc."""
    from dvc.repo import Repo, lock_repo
    from dvc.utils.serialize import modify_yaml

    for rel in files:
        if Path(rel).is_absolute() or ".." in Path(rel).parts:
            raise SyncError(f"stage {stage}: refusing to write {rel!r} outside {project}")
    with Repo(str(project), _wait_for_lock=True) as repo, lock_repo(repo):
        for rel, text in files.items():
            _write_atomic(project / rel, text)
        with modify_yaml(str(project / "dvc.lock")) as data:
            if not data:
                data["schema"] = "2.0"
            data.setdefault("stages", {})[stage] = dict(entry)
        repo._reset()  # the index read dvc.lock before we wrote it
        stats = repo.pull(targets=[stage])
        status = repo.status(targets=[stage])
    reasons = [r for r in status.get(stage, []) if r != ALWAYS_CHANGED]
    if reasons:
        raise SyncError(
            f"stage {stage}: the worker's result does not match the controller's inputs "
            f"({json.dumps(reasons, sort_keys=True)}); the worker ran other code, params or data. "
            "dvc.lock now holds the worker's entry, so the next run will run the stage again"
        )
    return {"fetched": stats["stats"]["fetched"]}


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def call(
    project: Path,
    command: str,
    targets: Sequence[str],
    env: Mapping[str, str],
    timeout_seconds: float,
    request: Mapping[str, Any] | None = None,
    run_cache: bool = False,
) -> dict[str, Any]:
    """Run one helper command in its own process group (stopped on a timeout or any exit)."""
    from pipelines.dvc_runner import _stop_group

    argv = [
        sys.executable,
        "-m",
        "pipelines.dvc_sync",
        command,
        *targets,
        "--project",
        str(project),
    ]
    proc = subprocess.Popen(
        [*argv, *(["--run-cache"] if run_cache else [])],
        cwd=project,
        env=dict(env),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(json.dumps(request or {}), timeout=timeout_seconds)
    except subprocess.TimeoutExpired:
        _stop_group(proc)
        raise SyncError(
            f"`dvc {command} {' '.join(targets)}` in {project} took over {timeout_seconds:g} s "
            "and was stopped; is the DVC remote reachable?"
        ) from None
    except BaseException:
        _stop_group(proc, grace_seconds=5.0)
        raise
    if proc.returncode != 0:
        lines = [ln for ln in err.splitlines() if ln.strip()]
        errors = [ln for ln in lines if ln.startswith("genpipe: error:")]
        raise SyncError(
            (errors[-1].removeprefix("genpipe: error: ") if errors else "\n".join(lines[-15:]))
            + f" (in {project})"
        )
    return json.loads(out.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m pipelines.dvc_sync", description=__doc__)
    p.add_argument("command", choices=["pull", "push", "snapshot", "accept"])
    p.add_argument(
        "targets", nargs="*", help="pull: output paths; push, snapshot, accept: stage names"
    )
    p.add_argument("--project", type=Path, required=True)
    p.add_argument("--run-cache", action="store_true", help="push: the run records too")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    project = args.project.resolve()
    try:
        if args.command == "pull":
            result = pull(project, args.targets)
        elif args.command == "push":
            result = push(project, args.targets, args.run_cache)
        elif args.command == "snapshot":
            result = snapshot(project, args.targets)
        else:
            if len(args.targets) != 1:
                raise SyncError("accept takes exactly one stage name")
            request = json.loads(sys.stdin.read())
            result = accept(project, args.targets[0], request["entry"], request.get("files", {}))
    except GenpipeError as exc:
        print(f"genpipe: error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # DVC's errors (no remote, unreachable, missing objects)
        print(
            f"genpipe: error: dvc {args.command} {' '.join(args.targets)}: {exc}", file=sys.stderr
        )
        return 2
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
