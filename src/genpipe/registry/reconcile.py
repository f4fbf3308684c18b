"""The register step: make the MLflow registry hold what data/register/decision.json says.

It runs on every `dvc repro` (an always-changed stage), so it must be cheap and idempotent:
when each model's `genpipe.decision_id` tag already names this decision and a champion exists,
it returns after one read, without importing MLflow. Otherwise, per task and under the model's
lock, it finds the challenger's version by its candidate id (registering it only if absent,
so a wiped store is refilled without duplicates), points `challenger` and `champion`, and tags
the decision. If a later task fails, the earlier tasks' aliases are put back, so the registry is
never left half on the new decision; `dvc repro` again finishes the job.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from genpipe.registry import mlflow_registry as registry
from genpipe.registry.decision import champion_candidate_id
from genpipe.settings import get_settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Applied:
    name: str
    champion: str  # version
    challenger: str  # version
    registered: bool  # a new version was created for the challenger
    changed: bool  # aliases or decision moved
    note: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def in_sync(record: dict[str, Any]) -> bool:
    """Whether every model already holds this decision and has a champion (the cheap check)."""
    names = [d["model_name"] for d in record["tasks"].values()]
    try:
        found = registry.applied_decisions(names, get_settings().tracking_uri)
    except LookupError:
        return False  # no cheap path to this store: reconcile() reads it through MLflow
    return all(found[n] == (record["decision_id"], True) for n in names)


def version_tags(record: dict[str, Any], task: str) -> dict[str, str]:
    from genpipe.tracking import git_commit

    d = record["tasks"][task]
    c = d["challenger"]
    settings = get_settings()
    return {
        registry.CANDIDATE_TAG: c["candidate_id"],
        "genpipe.task": task,
        "genpipe.family": c["family"],
        "genpipe.method": c["method"] or "sample",
        "genpipe.metric": d["metric"],
        "genpipe.metric_value": repr(c["value"]),
        "genpipe.metric_ci": "null" if c["ci"] is None else f"[{c['ci'][0]!r}, {c['ci'][1]!r}]",
        "genpipe.protocol_hash": str(record.get("protocol_hash")),
        "genpipe.data_hash": str(record.get("data_hash")),
        "genpipe.git_commit": git_commit(),
        "genpipe.pipeline_run_id": settings.pipeline_run_id or "none",
        "genpipe.train_run_id": str(c.get("train_run_id") or ""),
    }


def reconcile(record: dict[str, Any], root: Path) -> dict[str, Applied]:
    """Apply `record` to the registry (paths in it are relative to `root`)."""
    from genpipe.tracking import configure_mlflow

    configure_mlflow()
    applied: dict[str, Applied] = {}
    before: dict[str, registry.ModelState | None] = {}
    with contextlib.ExitStack() as stack:
        run: list[Any] = []  # opened only when a version must be registered
        try:
            for task, d in record["tasks"].items():
                name = d["model_name"]
                with registry.model_lock(name):
                    before[task] = registry.model_state(name)
                    applied[task] = _apply_task(record, task, root, stack, run)
        except Exception:
            for task in applied:
                with contextlib.suppress(Exception):
                    registry.restore_state(record["tasks"][task]["model_name"], before[task])
            raise
    return applied


def _apply_task(
    record: dict[str, Any], task: str, root: Path, stack: contextlib.ExitStack, run: list
) -> Applied:
    d = record["tasks"][task]
    name, decision = d["model_name"], record["decision_id"]
    state = registry.model_state(name)
    if state and state.decision == decision and registry.CHAMPION in state.aliases:
        return Applied(
            name,
            state.aliases[registry.CHAMPION],
            state.aliases.get(registry.CHALLENGER, "?"),
            False,
            False,
            "already holds this decision",
        )
    registry.ensure_model(
        name, f"genpipe {task} models on {record['dataset']}; serve the `champion` alias."
    )
    challenger = registry.find_version(name, d["challenger"]["candidate_id"])
    registered = challenger is None
    if challenger is None:
        if not run:
            run.append(stack.enter_context(_register_run(record)))
        challenger = _register(record, task, root, run[0])
    champion, note = challenger, d["reason"]
    if d["champion"] == "incumbent":
        kept = registry.find_version(name, champion_candidate_id(d))
        if kept is None:
            note = (
                f"the champion in the decision (v{d['incumbent']['version']}) is not in this "
                "registry (a wiped or new store), so the best new candidate takes champion"
            )
        else:
            champion = kept
    registry.point(name, champion, challenger, decision)
    log.info("%s: champion v%s, challenger v%s (%s)", name, champion, challenger, note)
    return Applied(name, champion, challenger, registered, True, note)


@contextlib.contextmanager
def _register_run(record: dict[str, Any]):
    """The MLflow run that holds the pyfunc models logged for new versions."""
    import mlflow

    from genpipe.registry.decision import markdown
    from genpipe.tracking import live_run

    tags = {
        "genpipe.data_hash": record.get("data_hash"),
        "genpipe.decision_id": record["decision_id"],
    }
    with live_run("register", record["dataset"], tags=tags) as run:
        mlflow.log_dict(record, "register/decision.json")
        mlflow.log_text(markdown(record), "register/decision.md")
        yield run


def _register(record: dict[str, Any], task: str, root: Path, run: Any) -> str:
    from genpipe.errors import GenpipeError
    from genpipe.models.checkpoint import read_record
    from genpipe.registry.pyfunc import log_pyfunc

    c = record["tasks"][task]["challenger"]
    path = root / c["checkpoint"]
    if not path.exists():
        raise GenpipeError(
            f"{path}: the {c['family']} model file named by the decision is missing; "
            "`dvc repro` restores or retrains it"
        )
    shape = tuple(read_record(path)["image_shape"])
    info = log_pyfunc(task, path, {"family": c["family"], **c["settings"]}, shape)
    tags = version_tags(record, task) | {"genpipe.register_run_id": run.info.run_id}
    return registry.create_version(record["tasks"][task]["model_name"], info.model_uri, tags)
