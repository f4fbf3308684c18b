"""The flow's plan: dvc.yaml's stage graph and which stages are stale, decided once, up front.

DVC answers, in a helper process (`python -m pipelines.dvc_plan`): importing DVC, reading
dvc.yaml and hashing the dependencies costs about a second, and doing it there keeps DVC's imports
out of the flow's process and lets them load on another core while the flow imports Prefect
(`DvcSide.prestart`, used by `python -m pipelines`). The helper opens the repo, builds the
graph, then waits for one request on stdin: it applies the parameter overrides (the way
`dvc exp run -S` does, validated by genpipe.config; see pipelines.params_overrides), asks DVC's
own status API which pipeline stages are stale, and answers with one JSON line. A helper that
gets no request (the flow never started) exits without touching anything.

`StagePlan` holds the answer and the pure rules the flow follows:
- a stage DVC called up to date is skipped without running DVC again, as long as every stage it
  depends on was skipped too; once an upstream stage ran (or was restored from the run-cache),
  its outputs may differ, so the stage goes to `dvc repro --single-item` and DVC decides;
- stages on the same level of the graph (same longest distance from a source) that may run share
  the CPU cores (genpipe.cpu, GENPIPE_CPU_SHARE).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import subprocess
import sys
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from genpipe.errors import GenpipeError

log = logging.getLogger(__name__)


class PlanError(GenpipeError):
    """DVC could not read the pipeline, or an override or params.yaml is invalid."""


@dataclass(frozen=True)
class StagePlan:
    """The stages in dvc.yaml order, what each one depends on, and which are stale now."""

    stages: tuple[str, ...]
    upstream: Mapping[str, tuple[str, ...]]
    stale: Mapping[str, Sequence[str]] = field(default_factory=dict)  # stage -> DVC's reasons
    applied: tuple[str, ...] = ()  # the overrides written to params.yaml
    files: Mapping[str, Mapping[str, Sequence[str]]] = field(default_factory=dict)
    dispatch: bool = False  # params.yaml's orchestration.dispatch (pipelines/dispatch.py)
    # stage -> {"outs": [...], "metrics": [...], "uncached": [...]}: output paths as DVC resolved
    # them; "uncached" (cache: false, kept in git) is a subset of the other two

    def __post_init__(self) -> None:
        unknown = {u for ups in self.upstream.values() for u in ups} - set(self.stages)
        if unknown or set(self.upstream) - set(self.stages):
            raise PlanError(f"the stage graph names unknown stages {sorted(unknown)}")

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> StagePlan:
        return cls(
            stages=tuple(data["stages"]),
            upstream={s: tuple(u) for s, u in data["upstream"].items()},
            stale={s: list(r) for s, r in data["stale"].items()},
            applied=tuple(data.get("applied", ())),
            files=data.get("files", {}),
            dispatch=bool(data.get("dispatch", False)),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "stages": list(self.stages),
            "upstream": {s: list(u) for s, u in self.upstream.items()},
            "stale": {s: list(r) for s, r in self.stale.items()},
            "applied": list(self.applied),
            "files": {s: dict(f) for s, f in self.files.items()},
            "dispatch": self.dispatch,
        }

    def order(self) -> list[str]:
        """Upstream before downstream; ties keep dvc.yaml's order (Kahn's algorithm)."""
        done: list[str] = []
        remaining = list(self.stages)
        while remaining:
            ready = [s for s in remaining if set(self.upstream.get(s, ())) <= set(done)]
            if not ready:
                raise PlanError(f"the stage graph has a cycle among {remaining}")
            done.append(ready[0])
            remaining.remove(ready[0])
        return done

    def levels(self) -> dict[str, int]:
        """Longest distance from a stage with no upstream stage (0 for those)."""
        level: dict[str, int] = {}
        for stage in self.order():
            level[stage] = 1 + max((level[u] for u in self.upstream.get(stage, ())), default=-1)
        return level

    def may_run(self) -> set[str]:
        """Stale stages and everything downstream of them: the only stages DVC may run."""
        maybe = set()
        for stage in self.order():
            if stage in self.stale or any(u in maybe for u in self.upstream.get(stage, ())):
                maybe.add(stage)
        return maybe

    def sharing(self, among: Collection[str] | None = None) -> dict[str, int]:
        """For each stage that may run: how many may-run stages share its level (its peers).

        `among`: count only these stages (the ones that run on this host when others are
        dispatched to workers).
        """
        level, maybe = self.levels(), self.may_run()
        if among is not None:
            maybe &= set(among)
        return {s: sum(level[o] == level[s] for o in maybe) for s in maybe}

    def skip_without_dvc(self, stage: str, upstream_ran: bool) -> bool:
        """Up to date when planned, and no upstream stage has changed anything since."""
        return stage not in self.stale and not upstream_ran


# --- the helper process (DVC's side) ---------------------------------------------------------


def read_graph(repo: Any) -> StagePlan:
    """Pipeline stages (those with a command) in dvc.yaml order, their upstream stages and files.

    DVC's graph has an edge from a stage to each stage whose output it depends on.
    """
    from dvc.stage import PipelineStage

    graph = repo.index.graph
    stages = [s for s in repo.index.stages if isinstance(s, PipelineStage)]
    names = [s.addressing for s in stages]
    upstream = {
        s.addressing: tuple(
            sorted(
                {u.addressing for u in graph.successors(s) if isinstance(u, PipelineStage)},
                key=names.index,
            )
        )
        for s in stages
    }
    files = {
        s.addressing: {
            "outs": [str(o.def_path) for o in s.outs if not o.metric],
            "metrics": [str(o.def_path) for o in s.outs if o.metric],
            "uncached": [str(o.def_path) for o in s.outs if not o.use_cache],  # git-tracked
        }
        for s in stages
    }
    return StagePlan(tuple(names), upstream, files=files)


def stale_stages(repo: Any, stages: Sequence[str]) -> dict[str, list[str]]:
    """DVC's status: {stage: reasons} for every pipeline stage `dvc repro` would not skip."""
    status = repo.status()
    stale: dict[str, list[str]] = {}
    for name in stages:
        reasons = status.get(name)
        if reasons:
            stale[name] = [
                json.dumps(r, sort_keys=True) if not isinstance(r, str) else r for r in reasons
            ]
    return stale


def serve_one_request(project: Path, stdin: TextIO, stdout: TextIO) -> int:
    """The helper: open the repo and its graph, then answer one request on stdin.

    Unless the request is already waiting, DVC's status is taken while the flow still starts
    (a no-op then gets its answer at once); overrides that change params.yaml make it retake the
    status on a fresh repo.
    """
    from dvc.repo import Repo

    from genpipe.config import ConfigError, load_params
    from pipelines import params_overrides

    try:
        with Repo(str(project), _wait_for_lock=True) as repo:  # as `dvc --wait-for-lock`
            graph = read_graph(repo)
            early = None if _waiting(stdin) else stale_stages(repo, graph.stages)
    except Exception as exc:  # DVC's errors: no repo, a bad dvc.yaml, a failing status
        return _reply(stdout, error=f"DVC cannot read the pipeline in {project}: {exc}")
    _reply(stdout, ready=True)
    line = stdin.readline()
    if not line.strip():
        return 0  # no request: the flow never started
    request = json.loads(line)
    unknown = sorted(set(request.get("stage_names", ())) - set(graph.stages))
    if unknown:
        return _reply(
            stdout,
            error=f"stage_timeouts names unknown stages {unknown}; dvc.yaml's stages are "
            f"{list(graph.stages)}",
        )
    try:
        applied = params_overrides.apply_overrides(
            project / "params.yaml", request.get("overrides")
        )
        params = load_params(project / "params.yaml")
    except (GenpipeError, ConfigError) as exc:
        return _reply(stdout, error=str(exc))
    stale = early
    if stale is None or applied:
        try:
            with Repo(str(project), _wait_for_lock=True) as fresh:
                stale = stale_stages(fresh, graph.stages)
        except Exception as exc:
            return _reply(stdout, error=f"`dvc status` failed in {project}: {exc}")
    plan = dataclasses.replace(
        graph, stale=stale, applied=tuple(applied), dispatch=params.orchestration.dispatch
    )
    return _reply(stdout, plan=plan.to_json())


def _waiting(stdin: TextIO) -> bool:
    """Whether a request is already on stdin (then the early status would be wasted)."""
    import select

    try:
        return bool(select.select([stdin], [], [], 0)[0])
    except (OSError, ValueError):  # not a selectable stream (tests pass StringIO)
        return True


def _reply(stdout: TextIO, **payload: Any) -> int:
    stdout.write(json.dumps(payload) + "\n")
    stdout.flush()
    return 0


class DvcSide:
    """A running helper process; `plan()` sends the request and returns its StagePlan."""

    _prestarted: dict[Path, DvcSide] = {}

    def __init__(self, project: Path) -> None:
        self.project = project
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pipelines.dvc_plan", "--project", str(project)],
            cwd=project,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": _pythonpath()},
        )

    @classmethod
    def prestart(cls, project: Path) -> None:
        """Start the helper now (before the flow imports Prefect); `take` returns it later."""
        project = project.resolve()
        cls._prestarted.setdefault(project, cls(project))

    @classmethod
    def take(cls, project: Path) -> DvcSide:
        """The prestarted helper for `project`, else a new one."""
        project = project.resolve()
        return cls._prestarted.pop(project, None) or cls(project)

    def wait_ready(self) -> None:
        """Block until the helper has read the graph (and taken the early status)."""
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if '"ready"' not in line:
            self._fail(line)

    def plan(self, overrides: Sequence[str], stage_names: Sequence[str] = ()) -> StagePlan:
        request = json.dumps({"overrides": list(overrides), "stage_names": list(stage_names)})
        out, err = self.proc.communicate(request + "\n")
        replies = [json.loads(ln) for ln in out.splitlines() if ln.startswith("{")]
        replies = [r for r in replies if "ready" not in r]
        if self.proc.returncode != 0 or not replies:
            self._fail(out, err)
        if "error" in replies[-1]:
            raise PlanError(replies[-1]["error"])
        return StagePlan.from_json(replies[-1]["plan"])

    def _fail(self, out: str, err: str = "") -> None:
        if not err and self.proc.stderr is not None:
            self.proc.kill()
            err = self.proc.stderr.read()
        for line in out.splitlines():
            if line.startswith("{") and "error" in line:
                raise PlanError(json.loads(line)["error"])
        raise PlanError(
            f"the DVC helper (python -m pipelines.dvc_plan) exited {self.proc.returncode} "
            f"in {self.project}:\n{err.strip()[-2000:]}"
        )


def _pythonpath() -> str:
    """This checkout first, so the helper imports the same `pipelines` package as the flow.

    `pipelines` is not an installed package (only src/genpipe is): the flow imports it from the
    folder it runs in, which need not be `project`.
    """
    here = str(Path(__file__).resolve().parents[1])
    return os.pathsep.join(p for p in (here, os.environ.get("PYTHONPATH", "")) if p)


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(description="the DVC side of the genpipe flow (one request)")
    p.add_argument("--project", required=True, type=Path)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    return serve_one_request(args.project.resolve(), sys.stdin, sys.stdout)


if __name__ == "__main__":
    raise SystemExit(main())
