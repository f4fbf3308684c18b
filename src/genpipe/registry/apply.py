"""The register step: apply data/register/decision.json to the MLflow registry, compare-and-set.

A decision names, per task, the champion it was made against (`incumbent`, or none). Under the
registry lock, register first checks that each task's `champion` is still that one, or already
the one the decision wants. If someone else moved it (a teammate's promotion, a rollback, a
wiped store), nothing is written, and the error names the new champion: the next `dvc repro`
snapshots it, scores it and decides again. Otherwise register finds the challenger's version by
its candidate id (registering it only when absent, so nothing is registered twice), points
`challenger` and `champion`, and tags the decision. If a later task fails, the earlier ones are
put back, so the registry is never left half on a decision.
"""

from __future__ import annotations

import contextlib
import getpass
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from genpipe.errors import GenpipeError
from genpipe.registry import mlflow_registry as registry
from genpipe.registry.lock import registry_lock
from genpipe.registry.schema import ChampionVersion, Decision, TaskDecision
from genpipe.settings import get_settings

log = logging.getLogger(__name__)


class ChampionMoved(GenpipeError):
    """The registry's champion is no longer the one the decision was made against."""


@dataclass(frozen=True)
class Applied:
    name: str
    champion: str  # version
    challenger: str  # version
    registered: bool  # a new version was created for the challenger
    note: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def moved(d: TaskDecision, current: ChampionVersion | None) -> str | None:
    """Why the registry no longer holds the champion `d` was decided against; None if it does
    (or already holds the champion `d` wants)."""
    expected = d.incumbent
    if current is None:
        if expected is None:
            return None
    elif current.candidate_id == d.champion_candidate or (
        expected is not None
        and (current.version, current.candidate_id) == (expected.version, expected.candidate_id)
    ):
        return None
    was = "no champion" if expected is None else f"v{expected.version}"
    if current is None:
        now = "it has none now (a wiped or new store, or the version was deleted)"
    else:
        family = f"{current.family} " if current.family else ""
        now = f"it is now v{current.version}, a {family}model registered by {current.registered_by or 'an unknown client'}"
    return (
        f"{d.model_name}: the champion moved since this decision was made against {was}: {now}. "
        f"Nothing was written; `dvc repro` re-evaluates against the new champion and decides "
        "again."
    )


def apply_decision(decision: Decision, root: Path) -> dict[str, Applied]:
    """Apply `decision` (its paths are relative to `root`) under the registry lock."""
    from genpipe.tracking import configure_mlflow

    uri = configure_mlflow()
    with registry_lock(uri):
        before = {t: registry.model_state(d.model_name) for t, d in decision.tasks.items()}
        current = {
            t: registry.version(d.model_name, held)
            if (held := (before[t].aliases.get(registry.CHAMPION) if before[t] else None))
            else None
            for t, d in decision.tasks.items()
        }
        problems = [m for t, d in decision.tasks.items() if (m := moved(d, current[t]))]
        if problems:
            raise ChampionMoved("\n".join(problems))
        applied: dict[str, Applied] = {}
        with contextlib.ExitStack() as stack:
            run: list[Any] = []  # opened only when a version must be registered
            try:
                for task, d in decision.tasks.items():
                    applied[task] = _apply_task(decision, d, current[task], root, stack, run)
            except Exception:
                for task in applied:
                    with contextlib.suppress(Exception):
                        registry.restore_state(decision.tasks[task].model_name, before[task])
                raise
    return applied


def _apply_task(
    decision: Decision,
    d: TaskDecision,
    current: ChampionVersion | None,
    root: Path,
    stack: contextlib.ExitStack,
    run: list[Any],
) -> Applied:
    name = d.model_name
    task = d.verdict.task
    registry.ensure_model(
        name, f"genpipe {task} models on {decision.dataset}; serve the `champion` alias."
    )
    challenger = registry.find_version(name, d.challenger.candidate_id)
    registered = challenger is None
    if challenger is None:
        if not run:
            run.append(stack.enter_context(_register_run(decision)))
        challenger = _register(decision, d, root, run[0])
    champion = challenger
    if d.champion == "incumbent":
        assert current is not None  # moved() let it through: the registry holds the incumbent
        champion = current.version
    registry.point(name, champion, challenger, decision.decision_id)
    log.info("%s: champion v%s, challenger v%s (%s)", name, champion, challenger, d.reason)
    return Applied(name, champion, challenger, registered, d.reason)


def version_tags(decision: Decision, d: TaskDecision) -> dict[str, str]:
    from genpipe.tracking import git_commit

    c = d.challenger
    settings = get_settings()
    return {
        registry.CANDIDATE_TAG: c.candidate_id,
        registry.WEIGHTS_TAG: c.weights_hash,
        registry.REGISTERED_BY_TAG: f"{getpass.getuser()}@{settings.host}:{settings.root}",
        "genpipe.task": d.verdict.task,
        "genpipe.family": c.family,
        "genpipe.method": c.method or "sample",
        "genpipe.metric": d.metric,
        "genpipe.metric_value": repr(c.value),
        "genpipe.metric_ci": "null" if c.ci is None else f"[{c.ci[0]!r}, {c.ci[1]!r}]",
        "genpipe.protocol_hash": decision.protocol_hash,
        "genpipe.data_hash": decision.data_hash,
        "genpipe.git_commit": git_commit(),
        "genpipe.pipeline_run_id": settings.pipeline_run_id or "none",
        "genpipe.train_run_id": c.train_run_id or "",
    }


@contextlib.contextmanager
def _register_run(decision: Decision):
    """The MLflow run that holds the pyfunc models logged for new versions."""
    import mlflow

    from genpipe.registry.decision import markdown
    from genpipe.tracking import live_run

    tags = {"genpipe.data_hash": decision.data_hash, "genpipe.decision_id": decision.decision_id}
    with live_run("register", decision.dataset, tags=tags) as run:
        mlflow.log_dict(decision.model_dump(mode="json"), "register/decision.json")
        mlflow.log_text(markdown(decision), "register/decision.md")
        yield run


def _register(decision: Decision, d: TaskDecision, root: Path, run: Any) -> str:
    from genpipe.models.checkpoint import read_record
    from genpipe.registry.pyfunc import log_pyfunc

    c = d.challenger
    path = root / c.checkpoint
    if not path.exists():
        raise GenpipeError(
            f"{path}: the {c.family} model file named by the decision is missing; "
            "`dvc repro` restores or retrains it"
        )
    shape = tuple(read_record(path)["image_shape"])
    info = log_pyfunc(d.verdict.task, path, {"family": c.family, **c.settings}, shape)
    tags = version_tags(decision, d) | {"genpipe.register_run_id": run.info.run_id}
    return registry.create_version(d.model_name, info, run.info.run_id, tags)
