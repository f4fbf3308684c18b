"""The one module that talks to the MLflow model registry: versions, aliases, tags, lock, rollback.

MLflow has no transactions, and aliases are last-writer-wins, so two racing `register` runs could
both read "no champion" and both claim it. The read-compare-write of `champion` therefore runs
under a per-model lock. The lock is a registered model named `<name>.lock`: creating a registered
model is atomic in every MLflow backend (a unique key in SQL; the server answers
RESOURCE_ALREADY_EXISTS to the loser), so it works across processes and machines hitting one
HTTP server, unlike a lock file. A lock carries its owner and an expiry, so a crashed holder's
lock is broken after its TTL.

Champion history is a JSON list of versions in the registered-model tag `genpipe.champion_history`
(last = current champion); rollback pops it and records the move in `genpipe.last_rollback`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import random
import socket
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from genpipe.errors import GenpipeError
from genpipe.registry.decision import Candidate, Promotion, higher_is_better, should_promote

log = logging.getLogger(__name__)

CHAMPION, CHALLENGER = "champion", "challenger"
HISTORY_TAG = "genpipe.champion_history"
ROLLBACK_TAG = "genpipe.last_rollback"
OWNER_TAG, EXPIRES_TAG = "genpipe.lock_owner", "genpipe.lock_expires"
HISTORY_KEEP = 50


class RegistryError(GenpipeError):
    """The registry cannot do what was asked; the message names the model and what to do."""


@dataclass(frozen=True)
class Outcome:
    name: str
    version: str
    promoted: bool
    reason: str
    previous_champion: str | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _client() -> Any:
    from mlflow import MlflowClient

    return MlflowClient()


def _code(exc: Exception) -> str:
    return str(getattr(exc, "error_code", ""))


def _exists_error(exc: Exception) -> bool:
    return _code(exc) in ("RESOURCE_ALREADY_EXISTS", "ALREADY_EXISTS")


def _missing_error(exc: Exception) -> bool:
    return _code(exc) in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND")


@contextlib.contextmanager
def model_lock(name: str, ttl: float = 120.0, timeout: float = 180.0) -> Iterator[str]:
    """Hold `<name>.lock` (a registered model) for the block; yields the owner id."""
    from mlflow.exceptions import MlflowException

    client, lock = _client(), f"{name}.lock"
    owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    deadline = time.monotonic() + timeout
    while True:
        tags = {OWNER_TAG: owner, EXPIRES_TAG: f"{time.time() + ttl:.3f}"}
        try:
            client.create_registered_model(lock, tags=tags, description="genpipe register lock")
            break
        except MlflowException as exc:
            if not _exists_error(exc):
                raise
        if _holder_or_break_stale(client, lock) == owner:  # our create landed; its reply was lost
            break
        if time.monotonic() > deadline:
            raise RegistryError(
                f"registered model {lock!r} is held by another register run for over "
                f"{timeout:.0f}s; if no run is active, delete {lock!r} in the MLflow UI and retry"
            )
        time.sleep(0.1 + random.random() * 0.3)
    log.debug("acquired %s as %s", lock, owner)
    try:
        yield owner
    finally:
        with contextlib.suppress(Exception):
            held = client.get_registered_model(lock)
            if held.tags.get(OWNER_TAG) == owner:
                client.delete_registered_model(lock)


def _holder_or_break_stale(client: Any, lock: str) -> str | None:
    """The lock's owner; a lock past its expiry (its holder crashed) is deleted instead."""
    from mlflow.exceptions import MlflowException

    try:
        held = client.get_registered_model(lock)
    except MlflowException as exc:
        if _missing_error(exc):
            return None
        raise
    if float(held.tags.get(EXPIRES_TAG, 0)) < time.time():
        log.warning("breaking stale lock %s held by %s", lock, held.tags.get(OWNER_TAG))
        with contextlib.suppress(MlflowException):
            client.delete_registered_model(lock)
        return None
    return held.tags.get(OWNER_TAG)


def register_version(name: str, model_uri: str, tags: Mapping[str, Any], description: str) -> str:
    """A new version of `name` (created when absent) from a logged model; returns its number."""
    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        _client().create_registered_model(name, description=description)
    except MlflowException as exc:
        if not _exists_error(exc):  # it exists already, or a racing run created it first
            raise
    mv = mlflow.register_model(model_uri, name, tags={k: str(v) for k, v in tags.items()})
    return str(mv.version)


def champion_candidate(name: str) -> tuple[str, Candidate, str] | None:
    """(version, its metric as a Candidate, its protocol hash) of the current champion, or None."""
    from mlflow.exceptions import MlflowException

    client = _client()
    try:
        version = client.get_registered_model(name).aliases.get(CHAMPION)
    except MlflowException as exc:
        if _missing_error(exc):
            return None
        raise
    if version is None:
        return None
    mv = client.get_model_version(name, str(version))
    return str(mv.version), candidate_from_tags(mv.tags), mv.tags.get("genpipe.protocol_hash", "")


def candidate_from_tags(tags: Mapping[str, str]) -> Candidate:
    ci = json.loads(tags.get("genpipe.metric_ci", "null"))
    return Candidate(
        tags.get("genpipe.family", "?"),
        float(tags.get("genpipe.metric_value", "nan")),
        tuple(ci) if ci else None,
        tags.get("genpipe.method"),
    )


def _history(client: Any, name: str) -> list[str]:
    return json.loads(client.get_registered_model(name).tags.get(HISTORY_TAG, "[]"))


def promote_if_better(name: str, version: str, metric: str, tie_rule: str) -> Outcome:
    """Alias `challenger` -> version; move `champion` there only if it wins (under the lock)."""
    client = _client()
    tags = client.get_model_version(name, version).tags
    challenger = candidate_from_tags(tags)
    with model_lock(name):
        client.set_registered_model_alias(name, CHALLENGER, version)
        current = champion_candidate(name)
        previous = current[0] if current else None
        verdict: Promotion = should_promote(
            challenger,
            tags.get("genpipe.protocol_hash", ""),
            current[1] if current else None,
            current[2] if current else None,
            higher_is_better(metric),
            tie_rule,
        )
        if verdict.promote:
            history = [v for v in _history(client, name) if v != version] + [version]
            client.set_registered_model_alias(name, CHAMPION, version)
            client.set_registered_model_tag(name, HISTORY_TAG, json.dumps(history[-HISTORY_KEEP:]))
        reason = verdict.reason + (f" (champion v{previous})" if previous else "")
        client.set_model_version_tag(name, version, "genpipe.decision", reason[:5000])
    log.info("%s v%s: %s -> %s", name, version, reason, CHAMPION if verdict.promote else CHALLENGER)
    return Outcome(name, version, verdict.promote, reason, previous)


def undo(outcome: Outcome) -> None:
    """Best-effort compensation when a later task failed: drop the version, restore the champion."""
    client = _client()
    with model_lock(outcome.name):
        if outcome.promoted:
            history = [v for v in _history(client, outcome.name) if v != outcome.version]
            client.set_registered_model_tag(outcome.name, HISTORY_TAG, json.dumps(history))
            if outcome.previous_champion:
                client.set_registered_model_alias(outcome.name, CHAMPION, outcome.previous_champion)
        client.delete_model_version(outcome.name, outcome.version)


def rollback(name: str) -> dict[str, str]:
    """Move `champion` back to the previous champion and record the move; returns {from, to}."""
    from mlflow.exceptions import MlflowException

    client = _client()
    try:
        client.get_registered_model(name)
    except MlflowException as exc:
        if _missing_error(exc):
            raise RegistryError(
                f"registered model {name!r} does not exist; run the register stage first"
            ) from None
        raise
    with model_lock(name):
        current = champion_candidate(name)
        if current is None:
            raise RegistryError(f"{name!r} has no champion to roll back")
        history = _history(client, name)
        while history and history[-1] != current[0]:  # alias moved by hand: trust the alias
            history.pop()
        history = history[:-1]
        while history:
            try:
                client.get_model_version(name, history[-1])
                break
            except MlflowException:  # a deleted version cannot be champion again
                history.pop()
        if not history:
            raise RegistryError(
                f"{name!r}: champion v{current[0]} has no previous champion to roll back to"
            )
        record = {"from": current[0], "to": history[-1], "at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        client.set_registered_model_alias(name, CHAMPION, history[-1])
        client.set_registered_model_tag(name, HISTORY_TAG, json.dumps(history))
        client.set_registered_model_tag(name, ROLLBACK_TAG, json.dumps(record))
        client.set_model_version_tag(name, current[0], "genpipe.rolled_back", json.dumps(record))
    log.info("%s: champion rolled back v%s -> v%s", name, record["from"], record["to"])
    return record


def describe(name: str) -> dict[str, Any]:
    """Aliases, history and each version's family and metric, for `genpipe registry show`."""
    from mlflow.exceptions import MlflowException

    client = _client()
    try:
        model = client.get_registered_model(name)
    except MlflowException as exc:
        if _missing_error(exc):
            raise RegistryError(
                f"registered model {name!r} does not exist; run the register stage first"
            ) from None
        raise
    versions = client.search_model_versions(f"name = '{name}'")
    return {
        "name": name,
        "aliases": {alias: str(v) for alias, v in model.aliases.items()},
        "history": json.loads(model.tags.get(HISTORY_TAG, "[]")),
        "last_rollback": json.loads(model.tags.get(ROLLBACK_TAG, "null")),
        "versions": {
            str(v.version): {
                k.removeprefix("genpipe."): val
                for k, val in v.tags.items()
                if k.startswith("genpipe.")
            }
            for v in sorted(versions, key=lambda v: int(v.version))
        },
    }
