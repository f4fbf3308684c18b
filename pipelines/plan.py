"""The flow's plan: dvc.yaml's stage graph and what DVC calls stale, asked once, up front, with
DVC's Python API in the flow's process; and the pure rules the flow follows with it."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from genpipe.errors import GenpipeError


class PlanError(GenpipeError):
    """DVC could not read the pipeline, or the stage graph is malformed."""


@dataclass(frozen=True)
class StagePlan:
    """The stages in dvc.yaml order, what each one depends on, and which are stale now."""

    stages: tuple[str, ...]
    upstream: Mapping[str, tuple[str, ...]]
    stale: Mapping[str, Sequence[str]] = field(default_factory=dict)  # stage -> DVC's reasons
    applied: tuple[str, ...] = ()  # the overrides written to params.yaml
    files: Mapping[str, Mapping[str, Sequence[str]]] = field(default_factory=dict)  # outs, metrics

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
        maybe: set[str] = set()
        for stage in self.order():
            if stage in self.stale or any(u in maybe for u in self.upstream.get(stage, ())):
                maybe.add(stage)
        return maybe

    def sharing(self, among: Collection[str] | None = None) -> dict[str, int]:
        """Per stage that may run: how many may-run stages (`among` these) share its level."""
        level, maybe = self.levels(), self.may_run()
        if among is not None:
            maybe &= set(among)
        return {s: sum(level[o] == level[s] for o in maybe) for s in maybe}

    def skip_without_dvc(self, stage: str, upstream_ran: bool) -> bool:
        """Up to date when planned, and no upstream stage has changed anything since."""
        return stage not in self.stale and not upstream_ran


def read_graph(repo: Any) -> StagePlan:
    """Pipeline stages in dvc.yaml order, their upstream stages (DVC's graph has an edge from a
    stage to each one whose output it reads) and output files."""
    from dvc.stage import PipelineStage

    stages = [s for s in repo.index.stages if isinstance(s, PipelineStage)]
    names = [s.addressing for s in stages]
    # fmt: off
    upstream = {s.addressing: tuple(n for n in names if n in {u.addressing for u in repo.index.graph.successors(s)})
                for s in stages}
    files = {s.addressing: {"outs": [str(o.def_path) for o in s.outs if not o.metric],
                            "metrics": [str(o.def_path) for o in s.outs if o.metric]} for s in stages}
    # fmt: on
    return StagePlan(tuple(names), upstream, files=files)


def check_policy(config: Any, stages: Sequence[str], dispatching: bool) -> None:
    """`orchestration:` names only dvc.yaml stages, and (when dispatching) gives each a pool."""
    from genpipe.config.orchestration import DEFAULT, LOCAL

    named = {"gate": {config.gate}, "timeouts": set(config.timeouts) - {DEFAULT},
             "retries": set(config.retries), "pools": set(config.pools)}  # fmt: skip
    problems = [f"orchestration.{key} names {sorted(names - set(stages))}, not stages of dvc.yaml"
                for key, names in named.items() if names - set(stages)]  # fmt: skip
    if dispatching and (missing := [s for s in stages if s not in config.pools]):
        problems.append(f"orchestration.pools has no pool for {missing}: add `<stage>: <work "
                        f"pool>` (or `<stage>: {LOCAL}`, the controller) to params.yaml")  # fmt: skip
    if problems:
        raise PlanError("; ".join(problems) + f". dvc.yaml's stages are {list(stages)}")


def make_plan(
    project: Path, overrides: Sequence[str], dispatch: bool | None
) -> tuple[StagePlan, Any]:
    """The graph, then the overrides into params.yaml (validated first: nothing is written if
    they fail), then what is stale. Returns the plan and `orchestration:`."""
    from dvc.repo import Repo

    from genpipe.config import load_params
    from genpipe.overrides import apply_overrides

    def check(params: Any) -> None:
        on = params.orchestration.dispatch if dispatch is None else dispatch
        check_policy(params.orchestration, graph.stages, on)

    try:
        repo = Repo(str(project), _wait_for_lock=True)
        graph = read_graph(repo)
    except Exception as exc:  # DVC's errors: no repo, a bad dvc.yaml
        raise PlanError(f"DVC cannot read the pipeline in {project}: {exc}") from None
    with repo:
        applied = apply_overrides(project / "params.yaml", overrides, check)
        params = load_params(project / "params.yaml")
        if applied:
            repo._reset()  # DVC read the params before the overrides
        else:
            check(params)
        try:
            status = repo.status()
        except Exception as exc:
            raise PlanError(f"`dvc status` failed in {project}: {exc}") from None
    reasons = {
        name: [r if isinstance(r, str) else json.dumps(r) for r in status[name]] for name in status
    }
    stale = {name: reasons[name] for name in graph.stages if reasons.get(name)}
    return dataclasses.replace(graph, stale=stale, applied=tuple(applied)), params.orchestration
