"""One registry writer at a time: register's compare-and-set, and rollback, run under this lock.

MLflow has no lock and no transaction across calls; aliases are last-writer-wins, and its own
answer to racing writers is a create that fails with RESOURCE_ALREADY_EXISTS, which would need a
registered model that is not a model. So the lock comes from a tool that holds one:
- PREFECT_API_URL set (a team's services): a Prefect global concurrency limit of one slot,
  `genpipe-registry`, held on a lease, so it spans hosts and a dead holder's slot comes back
  when the lease runs out;
- otherwise a file lock: next to the store for a local SQLite store, and per server URL in the
  temp folder for an `mlflow server`, which serialises the checkouts on this host only (a team
  on several hosts sets PREFECT_API_URL: `make -s services-env` prints it).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from genpipe.errors import GenpipeError

log = logging.getLogger(__name__)

LIMIT = "genpipe-registry"
TIMEOUT_SECONDS = 600.0  # a register that registers versions logs models: minutes, not hours


@contextlib.contextmanager
def registry_lock(tracking_uri: str, timeout: float = TIMEOUT_SECONDS) -> Iterator[None]:
    """Hold the registry's lock for the block; a GenpipeError after `timeout` seconds."""
    if os.environ.get("PREFECT_API_URL"):
        with _prefect_slot(timeout):
            yield
        return
    with _file_lock(lock_file(tracking_uri), timeout):
        yield


def lock_file(tracking_uri: str) -> Path:
    """The lock file of a store: beside a SQLite file, else in the temp folder per server."""
    if tracking_uri.startswith("sqlite:///"):
        db = Path(tracking_uri.removeprefix("sqlite:///"))
        return db.with_name(db.name + ".registry.lock")
    digest = hashlib.sha256(tracking_uri.rstrip("/").encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"genpipe-registry-{digest}.lock"


@contextlib.contextmanager
def _file_lock(path: Path, timeout: float) -> Iterator[None]:
    from filelock import FileLock, Timeout

    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as held:
        try:
            held.enter_context(FileLock(path, timeout=timeout))
        except Timeout:
            raise GenpipeError(
                f"another register or rollback has held {path} for over {timeout:.0f} s; wait "
                "for it (a lock file is released when its process ends), then run again"
            ) from None
        yield


@contextlib.contextmanager
def _prefect_slot(timeout: float) -> Iterator[None]:
    import httpx
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
    from prefect.concurrency.sync import concurrency
    from prefect.exceptions import ObjectAlreadyExists

    url = os.environ["PREFECT_API_URL"]
    try:
        with get_client(sync_client=True) as prefect, contextlib.suppress(ObjectAlreadyExists):
            prefect.create_global_concurrency_limit(
                GlobalConcurrencyLimitCreate(name=LIMIT, limit=1)
            )
    except (httpx.HTTPError, OSError) as exc:
        raise GenpipeError(
            f"the Prefect API at {url} (PREFECT_API_URL), which holds the registry lock, is "
            f"unreachable ({exc}); start it (make services-up), or unset PREFECT_API_URL to "
            "lock on this host only"
        ) from None
    with contextlib.ExitStack() as held:
        try:
            held.enter_context(concurrency(LIMIT, occupy=1, timeout_seconds=timeout, strict=True))
        except TimeoutError:
            raise GenpipeError(
                f"the Prefect concurrency limit {LIMIT!r} at {url} "
                f"stayed taken for over {timeout:.0f} s; `prefect gcl inspect {LIMIT}` shows it"
            ) from None
        yield
