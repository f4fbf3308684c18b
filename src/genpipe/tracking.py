"""MLflow run tracking: the one edge between genpipe's stages and MLflow runs.

(The model registry has its own module, genpipe.registry.mlflow_registry.)

Two shapes of run, both with genpipe's standard tags:
- `record_run`: a finished stage reports everything in one call (params, metrics, artifacts)
  with its real start and end time, so a run's duration in the UI is the stage's.
- `live_run`: a run that stays open while a stage works, for training (per-epoch curves while it
  trains; reopened on resume) and for register (MLflow logs models into an active run).
"""

from __future__ import annotations

import contextlib
import logging
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from genpipe.errors import GenpipeError
from genpipe.settings import get_settings

log = logging.getLogger(__name__)

_BATCH = 100  # MLflow accepts at most 100 params (1000 metrics) per log_batch


class TrackingError(GenpipeError):
    """The MLflow tracking server cannot be used; the message names the URI."""


def experiment_name(dataset: str) -> str:
    """The MLflow experiment of every run on one dataset (its slug from data/prepared/meta.json)."""
    return f"genpipe-{dataset}"


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
    if not settings.tracking_uri.startswith(("http://", "https://")):
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


def standard_tags(stage: str, extra: Mapping[str, Any] | None = None) -> dict[str, str]:
    """The tags every genpipe run carries (docs/ARCHITECTURE.md lists them)."""
    import torch

    settings = get_settings()
    tags = {
        "genpipe.stage": stage,
        "genpipe.git_commit": git_commit(settings.root),
        "genpipe.torch_version": torch.__version__,
        "genpipe.host": settings.host,
    }
    if settings.pipeline_run_id:
        tags["genpipe.pipeline_run_id"] = settings.pipeline_run_id
    if settings.parent_run_id:  # a sweep member's stages nest under its run in the MLflow UI
        tags["mlflow.parentRunId"] = settings.parent_run_id
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


def _params(params: Mapping[str, Any]) -> list[tuple[str, str]]:
    return [(k, str(v)[:6000]) for k, v in flatten(params).items()]


@dataclass(frozen=True)
class RunRecord:
    """Everything one finished stage reports to MLflow."""

    stage: str
    dataset: str
    started: float  # time.time() when the stage began
    params: Mapping[str, Any] = field(default_factory=dict)  # config sections, flattened
    metrics: Mapping[str, float] = field(default_factory=dict)
    tags: Mapping[str, Any] = field(default_factory=dict)
    artifacts: Sequence[tuple[Path, str | None]] = ()  # (file or folder, artifact path)
    failed: bool = False


def record_run(record: RunRecord) -> str:
    """Create the stage's run with its real start and end time, log it all, close it."""
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param

    configure_mlflow()
    client = MlflowClient()
    run = client.create_run(
        experiment_id(experiment_name(record.dataset)),
        start_time=int(record.started * 1000),
        tags=standard_tags(record.stage, record.tags),
        run_name=record.stage,
    )
    run_id = run.info.run_id
    try:
        now = int(time.time() * 1000)
        metrics = [Metric(k, float(v), now, 0) for k, v in record.metrics.items()]
        params = [Param(k, v) for k, v in _params(record.params)]
        for i in range(0, max(len(metrics), len(params)), _BATCH):
            client.log_batch(run_id, metrics=metrics[i : i + _BATCH], params=params[i : i + _BATCH])
        for path, artifact_path in record.artifacts:
            if path.is_dir():
                client.log_artifacts(run_id, str(path), artifact_path)
            elif path.exists():
                client.log_artifact(run_id, str(path), artifact_path)
        client.set_tag(run_id, "genpipe.status", "failed" if record.failed else "ok")
    except Exception:
        client.set_terminated(run_id, "FAILED")
        raise
    client.set_terminated(run_id, "FAILED" if record.failed else "FINISHED")
    return run_id


@contextlib.contextmanager
def live_run(
    stage: str,
    dataset: str,
    params: Mapping[str, Any] | None = None,
    tags: Mapping[str, Any] | None = None,
    run_id: str | None = None,
) -> Iterator[Any]:
    """An open MLflow run for the block; `run_id` reopens (continues) an earlier run.

    A reopened run keeps the params and tags it was made with; an exception marks it FAILED.
    """
    import mlflow

    configure_mlflow()
    if run_id is not None:
        ctx = mlflow.start_run(run_id=run_id)
    else:
        ctx = mlflow.start_run(
            experiment_id=experiment_id(experiment_name(dataset)),
            run_name=stage,
            tags=standard_tags(stage, tags),
        )
    with ctx as run:
        if run_id is None and params:
            items = _params(params)
            for i in range(0, len(items), _BATCH):
                mlflow.log_params(dict(items[i : i + _BATCH]))
        yield run


def end_orphan(run_id: str) -> bool:
    """Mark a run that a killed process left RUNNING as FAILED; True if it was open."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    configure_mlflow()
    client = MlflowClient()
    try:
        run = client.get_run(run_id)
    except MlflowException:
        return False
    if run.info.status != "RUNNING":
        return False
    client.set_tag(run_id, "genpipe.status", "crashed")
    client.set_terminated(run_id, "FAILED")
    log.info("MLflow run %s was left RUNNING by a killed stage; marked FAILED", run_id)
    return True


def run_exists(run_id: str | None) -> bool:
    """Whether this tracking store still has the run (a checkpoint may outlive its store)."""
    if run_id is None:
        return False
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    configure_mlflow()
    try:
        MlflowClient().get_run(run_id)
    except MlflowException:
        return False
    return True


# --- Sweeps: one parent run per sweep, a nested child run per member (pipelines/sweep.py).
SWEEP_TAG = "genpipe.sweep_id"  # the parent's identity: a rerun of the same sweep finds it again
MEMBER_TAG = "genpipe.sweep_member"  # a child's DVC experiment name
PARENT_TAG = "mlflow.parentRunId"  # what nests a run under another in the MLflow UI


def open_sweep_run(dataset: str, sweep_id: str, name: str, params: Mapping[str, Any]) -> str:
    """The sweep's parent run, reopened when this sweep ran before, else created."""
    from mlflow import MlflowClient
    from mlflow.entities import Param

    configure_mlflow()
    client = MlflowClient()
    experiment = experiment_id(experiment_name(dataset))
    found = client.search_runs([experiment], f"tags.`{SWEEP_TAG}` = '{sweep_id}'", max_results=1)
    if found:
        client.update_run(found[0].info.run_id, status="RUNNING")
        return found[0].info.run_id
    run = client.create_run(
        experiment, run_name=name, tags=standard_tags("sweep", {SWEEP_TAG: sweep_id})
    )
    client.log_batch(run.info.run_id, params=[Param(k, v) for k, v in _params(params)][:_BATCH])
    return run.info.run_id


def member_run(parent_id: str, member: str, params: Mapping[str, Any]) -> tuple[str, bool]:
    """(run id, finished) of a member's child run: its finished run if it has one, else a new
    open run (a failed attempt keeps its own run, FAILED)."""
    from mlflow import MlflowClient
    from mlflow.entities import Param

    configure_mlflow()
    client = MlflowClient()
    experiment = client.get_run(parent_id).info.experiment_id
    query = f"tags.`{PARENT_TAG}` = '{parent_id}' and tags.`{MEMBER_TAG}` = '{member}'"
    for run in client.search_runs([experiment], query, order_by=["attributes.start_time DESC"]):
        if run.info.status == "FINISHED":
            return run.info.run_id, True
    tags = standard_tags("sweep_member", {PARENT_TAG: parent_id, MEMBER_TAG: member})
    run = client.create_run(experiment, run_name=member, tags=tags)
    if params:
        client.log_batch(run.info.run_id, params=[Param(k, v) for k, v in _params(params)])
    return run.info.run_id, False


def close_run(
    run_id: str,
    metrics: Mapping[str, float],
    tags: Mapping[str, Any] | None = None,
    artifacts: Sequence[Path] = (),
    failed: bool = False,
) -> None:
    """Log a sweep's or a member's results and end its run."""
    from mlflow import MlflowClient
    from mlflow.entities import Metric

    configure_mlflow()
    client = MlflowClient()
    now = int(time.time() * 1000)
    values = [Metric(k, float(v), now, 0) for k, v in metrics.items()]
    for i in range(0, len(values), _BATCH):
        client.log_batch(run_id, metrics=values[i : i + _BATCH])
    for key, value in (tags or {}).items():
        client.set_tag(run_id, key, str(value))
    for path in artifacts:
        client.log_artifact(run_id, str(path))
    client.set_terminated(run_id, "FAILED" if failed else "FINISHED")


def drop_member_runs(held: Collection[str], dry: bool = False) -> list[str]:
    """Mark deleted the runs of sweep members DVC no longer holds (removed with `dvc exp remove`,
    or failed) and the stage runs nested under them; a run a registered model version comes from
    stays. Returns the run ids, for `mlflow gc --run-ids` to purge (`dry`: only returns them)."""
    from mlflow import MlflowClient

    configure_mlflow()
    client = MlflowClient()
    kept = {v.run_id for v in client.search_model_versions() if v.run_id}
    experiments = [e.experiment_id for e in client.search_experiments()]
    if not experiments:
        return []
    members = _all_runs(client, experiments, "tags.`genpipe.stage` = 'sweep_member'")
    gone = [r.info.run_id for r in members if r.data.tags.get(MEMBER_TAG) not in held]
    dropped = []
    for run_id in gone:
        nested = _all_runs(client, experiments, f"tags.`{PARENT_TAG}` = '{run_id}'")
        for found in [run_id, *(r.info.run_id for r in nested)]:
            if found not in kept:
                if not dry:
                    client.delete_run(found)
                dropped.append(found)
    return dropped


def _all_runs(client: Any, experiments: list[str], query: str) -> list[Any]:
    runs, token = [], None
    while True:
        page = client.search_runs(experiments, query, page_token=token)
        runs += list(page)
        token = page.token
        if not token:
            return runs
