"""MLflow run tracking: the one edge between genpipe's stages and MLflow runs.

(The model registry has its own module, genpipe.registry.mlflow_registry.)

Two shapes of run, both with genpipe's standard tags, and the prepared data they saw as an MLflow
dataset input (`log_dataset`: name, the DVC hash of data/prepared, its path):
- `record_run`: a finished stage reports everything in one call (params, metrics, artifacts)
  with its real start and end time, so a run's duration in the UI is the stage's.
- `live_run`: a run that stays open while a stage works, for training (per-epoch curves while it
  trains; reopened on resume) and for register (MLflow logs models into an active run).

A tracking server or its database lost under a running stage fails the stage after MLflow's own
retry budget (MLFLOW_HTTP_REQUEST_*, from `services.client`), once: the error is a TrackingError
naming the server, what it reported and `make services-status`, not MLflow's traceback. Every run
records its owner (host, pid, process start), so `clean_orphans` marks FAILED only runs whose
process is provably gone.
"""

from __future__ import annotations

import contextlib
import logging
import subprocess
import sys
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


def _request(url: str) -> urllib.request.Request:
    """A request carrying the credentials MLflow's own client sends (MLFLOW_TRACKING_USERNAME
    and _PASSWORD, or MLFLOW_TRACKING_TOKEN)."""
    import base64
    import os

    request = urllib.request.Request(url)
    user, password = (
        os.environ.get("MLFLOW_TRACKING_USERNAME"),
        os.environ.get("MLFLOW_TRACKING_PASSWORD"),
    )
    if user and password:
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    elif token := os.environ.get("MLFLOW_TRACKING_TOKEN"):
        request.add_header("Authorization", f"Bearer {token}")
    return request


def check_server(uri: str, timeout: float = 5.0) -> None:
    """Raise TrackingError unless an MLflow server answers at `uri` and can use its store."""
    try:
        with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=timeout) as resp:
            if resp.status != 200:
                raise TrackingError(
                    f"MLflow server at {uri} answered HTTP {resp.status} on /health; "
                    "check it with `make services-status`"
                )
    except (urllib.error.URLError, OSError) as exc:
        raise TrackingError(
            f"MLflow tracking server at {uri} does not answer ({getattr(exc, 'reason', exc)}). "
            "Check it with `make services-status` (`make services-up` restarts the team's), or "
            "unset MLFLOW_TRACKING_URI to use the local SQLite store."
        ) from None
    check_backend_store(uri, timeout * 2)


def check_backend_store(uri: str, timeout: float = 10.0) -> None:
    """Raise TrackingError if the server at `uri` refuses our credentials or cannot reach its
    database.

    /health answers without touching the store, and MLflow's client retries a 500 with backoff
    for minutes; one unretried read here turns a down database into an error within seconds.
    """
    import json

    url = f"{uri.rstrip('/')}/api/2.0/mlflow/experiments/search?max_results=1"
    try:
        with urllib.request.urlopen(_request(url), timeout=timeout):
            return
    except urllib.error.HTTPError as exc:
        body = exc.read().decode(errors="replace")
        with contextlib.suppress(ValueError):
            parsed = json.loads(body)
            body = parsed.get("message", body) if isinstance(parsed, dict) else body
        if exc.code in (401, 403):
            raise TrackingError(
                f"MLflow server at {uri} refused the request (HTTP {exc.code}): it needs the "
                "team's credentials in MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD; "
                'set them with eval "$(make -s services-env)"'
            ) from None
        raise TrackingError(
            f"MLflow server at {uri} cannot use its database (HTTP {exc.code}): "
            f"{' '.join(str(body).split())[:400]}. Check it with `make services-status` "
            "(`make services-up` restarts what is down)"
        ) from None
    except (urllib.error.URLError, OSError) as exc:
        raise TrackingError(
            f"MLflow server at {uri} answers /health but not a query within {timeout:.0f} s "
            f"({exc}); its database may be down: check it with `make services-status`"
        ) from None


def diagnose(exc: BaseException) -> TrackingError | None:
    """What a failed MLflow call means for the user, when the tracking server or its database is
    the cause: a quick unretried check of the server names it. None if the server answers (the
    original error stands) or the store is not a server."""
    from mlflow.exceptions import MlflowException

    if isinstance(exc, TrackingError):
        return exc
    uri = get_settings().tracking_uri
    if not isinstance(exc, MlflowException | OSError) or not uri.startswith(("http:", "https:")):
        return None
    try:
        check_server(uri)
    except TrackingError as found:
        failed = " ".join(str(exc).split())[:300]
        return TrackingError(f"{found} The call that failed: {type(exc).__name__}: {failed}")
    return None


@contextlib.contextmanager
def _no_retries() -> Iterator[None]:
    """MLflow's HTTP retries off for one last call after the server was lost: the run's end is
    tried once, not for a second retry budget."""
    import os

    saved = {
        k: os.environ.get(k)
        for k in ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_TIMEOUT")
    }
    os.environ.update({"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"})
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextlib.contextmanager
def diagnosed() -> Iterator[None]:
    """MLflow calls in the block that fail because the server or its database is gone raise the
    TrackingError that names it (no traceback at the stage's edge)."""
    try:
        yield
    except Exception as exc:
        found = diagnose(exc)
        if found is None or found is exc:
            raise
        raise found from None


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
    """The tags every genpipe run carries (docs/ARCHITECTURE.md lists them). A process that
    runs torch tags its version; data stages and records never import torch just for a tag."""
    settings = get_settings()
    tags = {
        "genpipe.stage": stage,
        "genpipe.git_commit": git_commit(settings.root),
        "genpipe.host": settings.host,
    }
    if (torch := sys.modules.get("torch")) is not None:
        tags["genpipe.torch_version"] = torch.__version__
    if settings.pipeline_run_id:
        tags["genpipe.pipeline_run_id"] = settings.pipeline_run_id
    tags[OWNER_TAG] = owner()
    if settings.parent_run_id:  # a sweep member's stages nest under its run in the MLflow UI
        tags["mlflow.parentRunId"] = settings.parent_run_id
    tags.update({k: str(v) for k, v in (extra or {}).items()})
    return tags


OWNER_TAG = "genpipe.owner"


def owner(pid: int | None = None) -> str:
    """`<host>:<pid>:<process start time>` of the process that holds a run open."""
    import os

    import psutil

    proc = psutil.Process(pid or os.getpid())
    return f"{get_settings().host}:{proc.pid}:{proc.create_time():.2f}"


def owner_gone(tag: str | None) -> bool:
    """True only when the owner is provably gone: it ran on this host and no process with its
    pid and start time exists. A run of another host, or without the tag, is never ours to end."""
    import psutil

    if not tag or tag.count(":") < 2:
        return False
    host, pid, started = tag.rsplit(":", 2)
    if host != get_settings().host:
        return False
    try:
        return f"{psutil.Process(int(pid)).create_time():.2f}" != started
    except psutil.NoSuchProcess:
        return True
    except (psutil.Error, ValueError):
        return False


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
    data: tuple[Path, str] | None = None  # (prepared folder, data hash): its dataset input
    failed: bool = False


def record_run(record: RunRecord) -> str:
    """Create the stage's run with its real start and end time, log it all, close it."""
    from mlflow import MlflowClient

    configure_mlflow()
    with diagnosed():
        return _record(MlflowClient(), record)


def _record(client: Any, record: RunRecord) -> str:
    from mlflow.entities import Metric, Param

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
        if record.data is not None:
            log_dataset(run_id, record.dataset, *record.data, context=record.stage)
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

    A reopened run keeps the params and tags it was made with and gets this process as its
    owner. An exception marks the run FAILED; when the server itself was lost, that end is tried
    once without retries and the error names the server.
    """
    import mlflow

    configure_mlflow()
    with diagnosed():
        if run_id is not None:
            run = mlflow.start_run(run_id=run_id)
            mlflow.set_tag(OWNER_TAG, owner())
        else:
            run = mlflow.start_run(
                experiment_id=experiment_id(experiment_name(dataset)),
                run_name=stage,
                tags=standard_tags(stage, tags),
            )
        if run_id is None and params:
            items = _params(params)
            for i in range(0, len(items), _BATCH):
                mlflow.log_params(dict(items[i : i + _BATCH]))
    try:
        yield run
    except BaseException as exc:
        found = diagnose(exc) if isinstance(exc, Exception) else None
        status = "KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED"
        with _no_retries() if found else contextlib.nullcontext(), contextlib.suppress(Exception):
            mlflow.end_run(status)
        if found is not None and found is not exc:
            raise found from None
        raise
    with diagnosed():
        mlflow.end_run()


def log_step(metrics: Mapping[str, float], step: int, run_id: str | None = None) -> None:
    """One step's metrics to the run (default: the active one). When the server's answer was
    cut off mid-read (a server killed or restarted while answering), the batch goes once more:
    MLflow retries connections, not a response lost after it began, and the same timestamps make
    the second send store nothing the first one stored."""
    import mlflow
    from mlflow.entities import Metric
    from requests.exceptions import ChunkedEncodingError

    now = int(time.time() * 1000)
    batch = [Metric(key, float(value), now, step) for key, value in metrics.items()]
    run_id, client = run_id or mlflow.active_run().info.run_id, mlflow.MlflowClient()
    try:
        client.log_batch(run_id, metrics=batch)
    except mlflow.MlflowException as exc:
        if not isinstance(exc.__context__, ChunkedEncodingError):
            raise
        client.log_batch(run_id, metrics=batch)


def logged_through(run_id: str) -> int:
    """The last step any metric of the run was logged at (0: none): a resumed training skips the
    epochs its killed attempt had already logged after its last checkpoint."""
    from mlflow import MlflowClient

    client = MlflowClient()
    with diagnosed():
        keys = client.get_run(run_id).data.metrics
        return max(
            (m.step for key in keys for m in client.get_metric_history(run_id, key)), default=0
        )


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


def clean_orphans(work: Path) -> list[str]:
    """What dead trainings and stages left behind, cleaned; returns one line per thing done.

    - a resume folder under `work` whose owner is gone: its MLflow run is marked FAILED (a later
      resume reopens it), and the folder is removed when the stage's output already holds its
      result (restored from the run-cache, say); otherwise it stays for the next resume;
    - a RUNNING run of a genpipe experiment whose owner ran on this host and is gone: FAILED.
    Runs of live processes, and of other hosts, are never touched.
    """
    import shutil

    from mlflow import MlflowClient

    configure_mlflow()
    root = get_settings().root
    done = []
    with diagnosed():
        for folder, claim in _resume_folders(work):
            if not owner_gone(claim.get("owner")):
                continue
            if claim.get("run_id") and end_orphan(claim["run_id"]):
                done.append(f"marked run {claim['run_id']} FAILED (its process is gone)")
            if _exported(root, folder, claim.get("out")):
                shutil.rmtree(folder, ignore_errors=True)
                done.append(f"removed {folder}: the stage's output holds its result")
        client = MlflowClient()
        ids = [
            e.experiment_id
            for e in client.search_experiments(filter_string="name LIKE 'genpipe-%'")
        ]
        host = get_settings().host.replace("'", "")
        running = (
            client.search_runs(
                ids,
                f"attributes.status = 'RUNNING' and tags.`genpipe.host` = '{host}'",
                max_results=1000,
            )
            if ids
            else []
        )
        for run in running:
            if owner_gone(run.data.tags.get(OWNER_TAG)) and end_orphan(run.info.run_id):
                done.append(f"marked run {run.info.run_id} FAILED (its process is gone)")
    return done


def _resume_folders(work: Path) -> Iterator[tuple[Path, dict[str, Any]]]:
    """Each resume folder under `work` (<stage>/<key>/) with its run.json (genpipe.training.
    workdir writes it: run_id, owner, out)."""
    import json

    for folder in sorted(work.glob("*/*")):
        if folder.is_dir():
            try:
                claim = json.loads((folder / "run.json").read_text())
            except (OSError, ValueError):
                claim = {}
            yield folder, claim if isinstance(claim, dict) else {}


def _exported(root: Path, folder: Path, out: str | None) -> bool:
    """The stage's output (its run.json's work_key) holds this folder's result."""
    import json

    if not out:
        return False
    try:
        key = json.loads((root / out / "run.json").read_text()).get("work_key", "")
    except (OSError, ValueError, AttributeError):
        return False
    return bool(key) and key.startswith(folder.name)


def dvc_hash(path: Path) -> str | None:
    """The hash dvc.lock records for the stage output at `path` (DVC writes each stage's entry
    as the stage ends, so a downstream stage finds its inputs' hashes there)."""
    import yaml

    root = get_settings().root.resolve()
    lock = root / "dvc.lock"
    if not lock.exists() or not Path(path).resolve().is_relative_to(root):
        return None
    rel = Path(path).resolve().relative_to(root)
    for stage in (yaml.safe_load(lock.read_text()) or {}).get("stages", {}).values():
        for out in stage.get("outs", []):
            if Path(out["path"]) == rel:
                return out.get("md5")
    return None


def log_dataset(run_id: str, name: str, prepared: Path, data_hash: str, context: str) -> None:
    """Record the prepared data a run used as its MLflow dataset input: `name`, the DVC hash
    of the folder as digest (genpipe's content hash when dvc.lock has none), its path as
    source, so the UI shows which data a model saw."""
    from mlflow import MlflowClient
    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.meta_dataset import MetaDataset
    from mlflow.entities import DatasetInput, InputTag

    digest = dvc_hash(prepared) or data_hash[:32]
    dataset = MetaDataset(resolve_dataset_source(str(Path(prepared).resolve())), name, digest)
    tags = [InputTag("mlflow.data.context", context), InputTag("genpipe.data_hash", data_hash)]
    from mlflow.exceptions import MlflowException

    inputs = [DatasetInput(dataset._to_mlflow_entity(), tags)]
    try:
        MlflowClient().log_inputs(run_id, inputs)
    except MlflowException:  # a stage beside this one inserted the same dataset first (SQLite)
        MlflowClient().log_inputs(run_id, inputs)


def download_model_file(source: str, dest: Path) -> Path:
    """A registered pyfunc model's genpipe model file: the model is downloaded from its
    `source` URI into `dest`, and its MLmodel names the file."""
    import mlflow
    import yaml

    configure_mlflow()
    local = Path(mlflow.artifacts.download_artifacts(artifact_uri=source, dst_path=str(dest)))
    meta = yaml.safe_load((local / "MLmodel").read_text())
    return local / meta["flavors"]["python_function"]["artifacts"]["model"]["path"]


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
