"""The one module that talks to the MLflow model registry: versions, aliases, tags, lock, rollback.

A registered version is identified by its `genpipe.candidate_id` tag (task, weights, serving
settings), never by its number, so a wiped store or a new tracking server can be refilled
without duplicates. The model's `genpipe.decision_id` tag names the decision it holds; reading
it is the cheap check `dvc repro` makes on every run (`applied_decisions`), done without
importing MLflow for the SQLite and HTTP stores.

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
import sqlite3
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from genpipe.errors import GenpipeError

log = logging.getLogger(__name__)

CHAMPION, CHALLENGER = "champion", "challenger"
HISTORY_TAG = "genpipe.champion_history"
ROLLBACK_TAG = "genpipe.last_rollback"
DECISION_TAG = "genpipe.decision_id"
CANDIDATE_TAG = "genpipe.candidate_id"
OWNER_TAG, EXPIRES_TAG = "genpipe.lock_owner", "genpipe.lock_expires"
HISTORY_KEEP = 50


class RegistryError(GenpipeError):
    """The registry cannot do what was asked; the message names the model and what to do."""


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


def ensure_model(name: str, description: str) -> None:
    """Create the registered model unless it exists (a racing run may create it first)."""
    from mlflow.exceptions import MlflowException

    try:
        _client().create_registered_model(name, description=description)
    except MlflowException as exc:
        if not _exists_error(exc):
            raise


def find_version(name: str, candidate: str) -> str | None:
    """The version of `name` holding this candidate (its weights and serving settings)."""
    from mlflow.exceptions import MlflowException

    try:
        found = _client().search_model_versions(
            f"name = '{name}' and tags.`{CANDIDATE_TAG}` = '{candidate}'"
        )
    except MlflowException as exc:
        if _missing_error(exc):
            return None
        raise
    return str(min(int(v.version) for v in found)) if found else None


def create_version(name: str, model_uri: str, tags: Mapping[str, Any]) -> str:
    """A new version of `name` from a logged model, its tags set in the same call."""
    import mlflow

    mv = mlflow.register_model(model_uri, name, tags={k: str(v) for k, v in tags.items()})
    return str(mv.version)


@dataclass(frozen=True)
class ModelState:
    aliases: dict[str, str]
    decision: str | None
    history: list[str]


def model_state(name: str) -> ModelState | None:
    """Aliases, applied decision and champion history of `name`; None when it does not exist."""
    from mlflow.exceptions import MlflowException

    try:
        model = _client().get_registered_model(name)
    except MlflowException as exc:
        if _missing_error(exc):
            return None
        raise
    return ModelState(
        {alias: str(v) for alias, v in model.aliases.items()},
        model.tags.get(DECISION_TAG),
        json.loads(model.tags.get(HISTORY_TAG, "[]")),
    )


def point(name: str, champion: str, challenger: str, decision: str) -> None:
    """Aliases and the applied decision; a champion move is appended to the history."""
    client = _client()
    state = model_state(name)
    client.set_registered_model_alias(name, CHALLENGER, challenger)
    if state is None or state.aliases.get(CHAMPION) != champion:
        history = [v for v in (state.history if state else []) if v != champion] + [champion]
        client.set_registered_model_alias(name, CHAMPION, champion)
        client.set_registered_model_tag(name, HISTORY_TAG, json.dumps(history[-HISTORY_KEEP:]))
    client.set_registered_model_tag(name, DECISION_TAG, decision)


def restore_state(name: str, state: ModelState | None) -> None:
    """Put aliases, decision and history back as they were (undo after a later failure)."""
    if state is None:
        return
    client = _client()
    for alias in (CHAMPION, CHALLENGER):
        if alias in state.aliases:
            client.set_registered_model_alias(name, alias, state.aliases[alias])
    client.set_registered_model_tag(name, HISTORY_TAG, json.dumps(state.history))
    if state.decision is None:
        client.delete_registered_model_tag(name, DECISION_TAG)
    else:
        client.set_registered_model_tag(name, DECISION_TAG, state.decision)


@dataclass(frozen=True)
class ChampionFile:
    version: str
    tags: dict[str, str]
    path: Path | None  # the genpipe model file inside the pyfunc model; None if unreadable
    problem: str | None  # why it could not be fetched


def champion_file(name: str, dest: Path) -> ChampionFile | None:
    """Download the current champion's genpipe model file; None when there is no champion."""
    import mlflow
    import yaml
    from mlflow.exceptions import MlflowException

    client = _client()
    try:
        mv = client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException as exc:
        if _missing_error(exc) or "alias" in str(exc).lower():
            return None
        raise
    version, tags = str(mv.version), dict(mv.tags)
    try:
        root = client.get_model_version_download_uri(name, version).rstrip("/")
        local = Path(dest) / version
        meta = yaml.safe_load(
            Path(
                mlflow.artifacts.download_artifacts(f"{root}/MLmodel", dst_path=str(local))
            ).read_text()
        )
        rel = meta["flavors"]["python_function"]["artifacts"]["model"]["path"]
        path = Path(mlflow.artifacts.download_artifacts(f"{root}/{rel}", dst_path=str(local)))
    except (MlflowException, OSError, KeyError, TypeError, yaml.YAMLError) as exc:
        return ChampionFile(version, tags, None, f"its model files are unreadable ({exc})")
    return ChampionFile(version, tags, path, None)


def applied_decisions(names: list[str], tracking_uri: str) -> dict[str, tuple[str | None, bool]]:
    """name -> (applied decision id, has a champion), read cheaply; raises LookupError when the
    store's kind has no cheap path (the caller then asks MLflow itself)."""
    if tracking_uri.startswith("sqlite:///"):
        return _sqlite_decisions(names, Path(tracking_uri.removeprefix("sqlite:///")))
    if tracking_uri.startswith(("http://", "https://")):
        return {name: _http_decision(name, tracking_uri) for name in names}
    raise LookupError(tracking_uri)


def _sqlite_decisions(names: list[str], db: Path) -> dict[str, tuple[str | None, bool]]:
    if not db.exists():
        return {name: (None, False) for name in names}
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)) as con:
        try:
            found = {}
            for name in names:
                tag = con.execute(
                    "SELECT value FROM registered_model_tags WHERE name = ? AND key = ?",
                    (name, DECISION_TAG),
                ).fetchone()
                alias = con.execute(
                    "SELECT version FROM registered_model_aliases WHERE name = ? AND alias = ?",
                    (name, CHAMPION),
                ).fetchone()
                found[name] = (tag[0] if tag else None, alias is not None)
            return found
        except sqlite3.OperationalError:  # an empty or half-created store
            return {name: (None, False) for name in names}


def _http_decision(name: str, uri: str) -> tuple[str | None, bool]:
    query = urllib.parse.urlencode({"name": name})
    request = urllib.request.Request(
        f"{uri.rstrip('/')}/api/2.0/mlflow/registered-models/get?{query}"
    )
    token = os.environ.get("MLFLOW_TRACKING_TOKEN")
    user, password = (
        os.environ.get("MLFLOW_TRACKING_USERNAME"),
        os.environ.get("MLFLOW_TRACKING_PASSWORD"),
    )
    if user and password:  # the team server's basic auth (make -s services-env)
        import base64

        basic = base64.b64encode(f"{user}:{password}".encode()).decode()
        request.add_header("Authorization", f"Basic {basic}")
    elif token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            model = json.loads(resp.read())["registered_model"]
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return None, False
        raise LookupError(f"{uri}: HTTP {exc.code}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise LookupError(f"{uri}: {exc}") from None
    tags = {t["key"]: t.get("value") for t in model.get("tags", [])}
    aliases = {a["alias"] for a in model.get("aliases", [])}
    return tags.get(DECISION_TAG), CHAMPION in aliases


def rollback(name: str) -> dict[str, str]:
    """Move `champion` back to the previous champion and record the move; returns {from, to}."""
    from mlflow.exceptions import MlflowException

    client = _client()
    if model_state(name) is None:
        raise RegistryError(
            f"registered model {name!r} does not exist in this tracking store; `dvc repro` "
            "registers the champions"
        )
    with model_lock(name):
        state = model_state(name)
        current = state.aliases.get(CHAMPION) if state else None
        if state is None or current is None:
            raise RegistryError(
                f"{name!r} has no champion to roll back; `dvc repro` registers the champions"
            )
        history = list(state.history)
        while history and history[-1] != current:  # alias moved by hand: trust the alias
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
                f"{name!r}: champion v{current} has no previous champion to roll back to"
            )
        record = {"from": current, "to": history[-1], "at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        client.set_registered_model_alias(name, CHAMPION, history[-1])
        client.set_registered_model_tag(name, HISTORY_TAG, json.dumps(history))
        client.set_registered_model_tag(name, ROLLBACK_TAG, json.dumps(record))
        client.set_model_version_tag(name, current, "genpipe.rolled_back", json.dumps(record))
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
                f"registered model {name!r} does not exist in this tracking store; `dvc repro` "
                "registers the champions"
            ) from None
        raise
    versions = client.search_model_versions(f"name = '{name}'")
    return {
        "name": name,
        "aliases": {alias: str(v) for alias, v in model.aliases.items()},
        "history": json.loads(model.tags.get(HISTORY_TAG, "[]")),
        "decision_id": model.tags.get(DECISION_TAG),
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
