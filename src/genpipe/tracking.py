"""MLflow run tracking (not the registry: that lives in genpipe.registry.mlflow_registry).

Stages call `tracked_run` to open a run in the project's store with the standard tags.
"""

from __future__ import annotations

import contextlib
import logging
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from genpipe.errors import GenpipeError
from genpipe.settings import get_settings

log = logging.getLogger(__name__)


class TrackingError(GenpipeError):
    """The MLflow tracking server cannot be used; the message names the URI."""


def configure_mlflow() -> str:
    """Point MLflow at the project's store (or MLFLOW_TRACKING_URI); fail clearly if unreachable."""
    import mlflow

    settings = get_settings()
    uri = settings.tracking_uri
    if uri.startswith("sqlite:///"):
        _create_sqlite_store(uri)
    elif uri.startswith(("http://", "https://")):
        check_server(uri)
    mlflow.set_tracking_uri(uri)
    return uri


def _create_sqlite_store(uri: str) -> None:
    """Create (migrate) the SQLite store once, under a file lock.

    MLflow's schema migration crashes when two processes (the concurrent training stages) create
    the same store at once, and a process that sees the file half-way through its migration fails
    on missing tables. So every process waits for the lock until a `<db>.ready` marker says the
    migration finished; afterwards the marker alone is checked.
    """
    import mlflow
    from filelock import FileLock

    db = Path(uri.removeprefix("sqlite:///"))
    ready = db.with_name(db.name + ".ready")
    if ready.exists():
        return
    db.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(f"{db}.lock"):
        if not ready.exists():
            mlflow.MlflowClient(tracking_uri=uri).search_experiments(max_results=1)
            ready.touch()


def check_server(uri: str, timeout: float = 5.0) -> None:
    """Raise TrackingError unless an MLflow server answers at `uri`."""
    try:
        with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=timeout) as resp:
            if resp.status != 200:
                raise TrackingError(
                    f"MLflow server at {uri} answered HTTP {resp.status} on /health"
                )
    except (urllib.error.URLError, OSError) as exc:
        raise TrackingError(
            f"MLflow tracking server at {uri} is unreachable ({exc}). Start it (make mlflow-server) "
            "or unset MLFLOW_TRACKING_URI to use the local SQLite store."
        ) from None
    check_backend_store(uri, timeout)


def check_backend_store(uri: str, timeout: float = 10.0) -> None:
    """Raise TrackingError if the server at `uri` cannot reach its database.

    /health answers without touching the store, and MLflow's client retries a 500 with backoff
    for minutes; one unretried read here turns a down database into an error within seconds.
    """
    import json

    url = f"{uri.rstrip('/')}/api/2.0/mlflow/experiments/search?max_results=1"
    try:
        with urllib.request.urlopen(url, timeout=timeout):
            return
    except urllib.error.HTTPError as exc:
        body = exc.read().decode(errors="replace")
        with contextlib.suppress(ValueError):
            parsed = json.loads(body)
            body = parsed.get("message", body) if isinstance(parsed, dict) else body
        raise TrackingError(
            f"MLflow server at {uri} cannot use its backend store (HTTP {exc.code}): "
            f"{' '.join(str(body).split())[:400]}. Check the database (make services-status)."
        ) from None
    except (urllib.error.URLError, OSError) as exc:
        raise TrackingError(
            f"MLflow server at {uri} answers /health but not a query within {timeout:.0f} s "
            f"({exc}); its database may be down: check it (make services-status)"
        ) from None


def experiment_id(name: str) -> str:
    """Get or create an experiment whose artifacts live under the project's artifact root."""
    import mlflow

    existing = mlflow.get_experiment_by_name(name)
    if existing is not None:
        return existing.experiment_id
    settings = get_settings()
    location = None
    if not get_settings().tracking_uri.startswith(("http://", "https://")):
        location = (settings.artifact_root / name).resolve().as_uri()
    try:
        return mlflow.create_experiment(name, artifact_location=location)
    except Exception:  # another process created it first
        found = mlflow.get_experiment_by_name(name)
        if found is None:
            raise
        return found.experiment_id


def git_commit(root: Path | None = None) -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=root or get_settings().root,
            capture_output=True,
            text=True,
            check=True,
        )
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def standard_tags(extra: Mapping[str, Any] | None = None) -> dict[str, str]:
    import torch

    settings = get_settings()
    tags = {
        "genpipe.git_commit": git_commit(settings.root),
        "genpipe.torch_version": torch.__version__,
    }
    if settings.pipeline_run_id:
        tags["genpipe.pipeline_run_id"] = settings.pipeline_run_id
    tags.update({k: str(v) for k, v in (extra or {}).items()})
    return tags


def flatten(mapping: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{'gan': {'lr': {'generator': 1}}} -> {'gan.lr.generator': 1}."""
    flat: dict[str, Any] = {}
    for key, value in mapping.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, Mapping):
            flat.update(flatten(value, name))
        else:
            flat[name] = value
    return flat


@contextlib.contextmanager
def tracked_run(
    experiment: str,
    run_name: str,
    params: Mapping[str, Any] | None = None,
    tags: Mapping[str, Any] | None = None,
    run_id: str | None = None,
) -> Iterator[Any]:
    """Open (or reopen, with run_id) an MLflow run with genpipe's standard tags and params."""
    import mlflow

    configure_mlflow()
    if run_id is not None:
        ctx = mlflow.start_run(run_id=run_id)
    else:
        ctx = mlflow.start_run(experiment_id=experiment_id(experiment), run_name=run_name)
    with ctx as run:
        # A reopened run (e.g. evaluate logging into a training run) keeps the tags it was made with.
        mlflow.set_tags(
            standard_tags(tags) if run_id is None else {k: str(v) for k, v in (tags or {}).items()}
        )
        if params:
            flat = {k: str(v)[:6000] for k, v in flatten(params).items()}
            items = list(flat.items())
            for i in range(0, len(items), 100):
                mlflow.log_params(dict(items[i : i + 100]))
        yield run
