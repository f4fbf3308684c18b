"""The one module that talks to the MLflow model registry, through `MlflowClient` only.

A registered version is identified by its `genpipe.candidate_id` tag (task, weights, serving
settings), never by its number, so a wiped store or a new tracking server is refilled without
duplicates. Champion history is a JSON list of versions in the registered-model tag
`genpipe.champion_history` (last = current champion). Rollback pops it, records the move in
`genpipe.last_rollback`, and adds the candidate it leaves to `genpipe.rolled_back`, which the
next decision reads (through the champions snapshot) so it never promotes that model again.
Writes that must not interleave with another register run under `genpipe.registry.lock`.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from genpipe.errors import GenpipeError

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from genpipe.registry.schema import Champions, ChampionVersion

log = logging.getLogger(__name__)

CHAMPION, CHALLENGER = "champion", "challenger"
HISTORY_TAG = "genpipe.champion_history"
ROLLBACK_TAG = "genpipe.last_rollback"
ROLLED_BACK_TAG = "genpipe.rolled_back"
DECISION_TAG = "genpipe.decision_id"
CANDIDATE_TAG = "genpipe.candidate_id"
WEIGHTS_TAG = "genpipe.weights_hash"
REGISTERED_BY_TAG = "genpipe.registered_by"
HISTORY_KEEP = 50


class RegistryError(GenpipeError):
    """The registry cannot do what was asked; the message names the model and what to do."""


def client() -> MlflowClient:
    from mlflow import MlflowClient

    return MlflowClient()


def _missing(exc: Exception) -> bool:
    return str(getattr(exc, "error_code", "")) in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND")


@dataclass(frozen=True)
class ModelState:
    aliases: dict[str, str]
    decision: str | None
    history: list[str]
    rolled_back: list[str]  # candidate ids


def model_state(name: str) -> ModelState | None:
    """Aliases, applied decision, champion history and rolled-back candidates of `name`; None
    when the model does not exist."""
    from mlflow.exceptions import MlflowException

    try:
        model = client().get_registered_model(name)
    except MlflowException as exc:
        if _missing(exc):
            return None
        raise
    return ModelState(
        {alias: str(v) for alias, v in model.aliases.items()},
        model.tags.get(DECISION_TAG),
        json.loads(model.tags.get(HISTORY_TAG, "[]")),
        json.loads(model.tags.get(ROLLED_BACK_TAG, "[]")),
    )


def version(name: str, number: str) -> ChampionVersion:
    """One version as the champions snapshot records it."""
    from genpipe.registry.schema import ChampionVersion

    mv = client().get_model_version(name, number)
    tags = mv.tags
    return ChampionVersion(
        version=str(mv.version),
        candidate_id=tags.get(CANDIDATE_TAG),
        family=tags.get("genpipe.family"),
        method=tags.get("genpipe.method") if tags.get("genpipe.task") == "restoration" else None,
        weights_hash=tags.get(WEIGHTS_TAG),
        registered_by=tags.get(REGISTERED_BY_TAG),
        source=str(mv.source),
    )


def snapshot(names: Mapping[str, str]) -> Champions:
    """task -> what its model's `champion` is now: the data/registry/champions.json record."""
    from genpipe.registry.schema import Champions, ModelSnapshot

    tasks = {}
    for task, name in names.items():
        state = model_state(name)
        held = state.aliases.get(CHAMPION) if state else None
        tasks[task] = ModelSnapshot(
            model_name=name,
            champion=version(name, held) if held else None,
            rolled_back=state.rolled_back if state else [],
        )
    return Champions(store=store_identity(), tasks=tasks)  # type: ignore[arg-type]


def store_identity() -> str | None:
    """When the store's Default experiment was made: changes when the store is wiped or
    replaced, even if it held no model before and holds none now."""
    from mlflow.exceptions import MlflowException

    try:
        return str(client().get_experiment("0").creation_time)
    except MlflowException:
        return None


def ensure_model(name: str, description: str) -> None:
    """Create the registered model unless it exists."""
    if model_state(name) is None:
        client().create_registered_model(name, description=description)


def find_version(name: str, candidate: str) -> str | None:
    """The version of `name` holding this candidate (its weights and serving settings)."""
    found = client().search_model_versions(
        f"name = '{name}' and tags.`{CANDIDATE_TAG}` = '{candidate}'"
    )
    return str(min(int(v.version) for v in found)) if found else None


def create_version(name: str, model: Any, run_id: str, tags: Mapping[str, Any]) -> str:
    """A new version of `name` from a logged model (MLflow's ModelInfo), its tags set."""
    mv = client().create_model_version(
        name,
        model.model_uri,
        run_id=run_id,
        tags={k: str(v) for k, v in tags.items()},
        model_id=model.model_id,
    )
    return str(mv.version)


def point(name: str, champion: str, challenger: str, decision: str) -> None:
    """Aliases and the applied decision; a champion move is appended to the history."""
    state = model_state(name)
    c = client()
    c.set_registered_model_alias(name, CHALLENGER, challenger)
    if state is None or state.aliases.get(CHAMPION) != champion:
        history = [v for v in (state.history if state else []) if v != champion] + [champion]
        c.set_registered_model_alias(name, CHAMPION, champion)
        c.set_registered_model_tag(name, HISTORY_TAG, json.dumps(history[-HISTORY_KEEP:]))
    c.set_registered_model_tag(name, DECISION_TAG, decision)


def restore_state(name: str, state: ModelState | None) -> None:
    """Put aliases, decision and history back as they were (undo after a later failure)."""
    if state is None:
        return
    c = client()
    for alias in (CHAMPION, CHALLENGER):
        if alias in state.aliases:
            c.set_registered_model_alias(name, alias, state.aliases[alias])
    c.set_registered_model_tag(name, HISTORY_TAG, json.dumps(state.history))
    if state.decision is None:
        c.delete_registered_model_tag(name, DECISION_TAG)
    else:
        c.set_registered_model_tag(name, DECISION_TAG, state.decision)


def rollback(name: str) -> dict[str, str]:
    """Move `champion` back to the previous champion and record the move; returns {from, to}.
    The caller holds the register lock."""
    from mlflow.exceptions import MlflowException

    c = client()
    state = model_state(name)
    if state is None:
        raise RegistryError(
            f"registered model {name!r} does not exist in this tracking store; `dvc repro` "
            "registers the champions"
        )
    current = state.aliases.get(CHAMPION)
    if current is None:
        raise RegistryError(
            f"{name!r} has no champion to roll back; `dvc repro` registers the champions"
        )
    history = list(state.history)
    while history and history[-1] != current:  # alias moved by hand: trust the alias
        history.pop()
    history = history[:-1]
    while history:
        try:
            c.get_model_version(name, history[-1])
            break
        except MlflowException:  # a deleted version cannot be champion again
            history.pop()
    if not history:
        raise RegistryError(
            f"{name!r}: champion v{current} has no previous champion to roll back to"
        )
    record = {"from": current, "to": history[-1], "at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    left = c.get_model_version(name, current).tags.get(CANDIDATE_TAG)
    rolled_back = [x for x in state.rolled_back if x != left] + ([left] if left else [])
    c.set_registered_model_alias(name, CHAMPION, history[-1])
    c.set_registered_model_tag(name, HISTORY_TAG, json.dumps(history))
    c.set_registered_model_tag(name, ROLLBACK_TAG, json.dumps(record))
    c.set_registered_model_tag(name, ROLLED_BACK_TAG, json.dumps(rolled_back[-HISTORY_KEEP:]))
    c.set_model_version_tag(name, current, "genpipe.rolled_back", json.dumps(record))
    log.info("%s: champion rolled back v%s -> v%s", name, record["from"], record["to"])
    return record


def champion_version(name: str) -> str:
    """The champion's version number, or a RegistryError that says what to run first."""
    from mlflow import get_tracking_uri
    from mlflow.exceptions import MlflowException

    try:
        return str(client().get_model_version_by_alias(name, CHAMPION).version)
    except MlflowException as exc:
        raise RegistryError(
            f"no champion for {name!r} in {get_tracking_uri()} ({exc.message[:200]}); run the "
            "pipeline (make pipeline) first, or set MLFLOW_TRACKING_URI to the store that has it"
        ) from None


def describe(name: str) -> dict[str, Any]:
    """Aliases, history and each version's family and metric, for `genpipe registry show`."""
    from mlflow.exceptions import MlflowException

    c = client()
    try:
        model = c.get_registered_model(name)
    except MlflowException as exc:
        if _missing(exc):
            raise RegistryError(
                f"registered model {name!r} does not exist in this tracking store; `dvc repro` "
                "registers the champions"
            ) from None
        raise
    versions = c.search_model_versions(f"name = '{name}'")
    return {
        "name": name,
        "aliases": {alias: str(v) for alias, v in model.aliases.items()},
        "history": json.loads(model.tags.get(HISTORY_TAG, "[]")),
        "decision_id": model.tags.get(DECISION_TAG),
        "last_rollback": json.loads(model.tags.get(ROLLBACK_TAG, "null")),
        "rolled_back": json.loads(model.tags.get(ROLLED_BACK_TAG, "[]")),
        "versions": {
            str(v.version): {
                k.removeprefix("genpipe."): val
                for k, val in v.tags.items()
                if k.startswith("genpipe.")
            }
            for v in sorted(versions, key=lambda v: int(v.version))
        },
    }
