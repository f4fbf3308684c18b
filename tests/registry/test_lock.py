"""The registry lock as its users meet it: a second writer waits, then fails with a clear error;
with a Prefect API the lock is a global concurrency limit, held across processes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from genpipe.registry.lock import LIMIT, lock_file, registry_lock

OTHER = (
    "from genpipe.registry.lock import registry_lock\nwith registry_lock({uri!r}, timeout=2): pass"
)


def other_writer(uri: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """A second process that wants the lock for at most 2 s."""
    return subprocess.run(
        [sys.executable, "-c", OTHER.format(uri=uri)],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=300,
    )


def test_an_http_store_without_prefect_locks_per_server_on_this_host() -> None:
    a, b = lock_file("http://127.0.0.1:5050"), lock_file("http://127.0.0.1:5050/")
    assert a == b and a != lock_file("http://127.0.0.1:5051")
    assert lock_file("sqlite:////x/mlflow.db") == Path("/x/mlflow.db.registry.lock")


@pytest.mark.slow
def test_with_a_prefect_api_the_lock_is_a_global_concurrency_limit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=600):  # slow to start on a busy box
        api = PREFECT_API_URL.value()
        monkeypatch.setenv("PREFECT_API_URL", api)
        with registry_lock("http://127.0.0.1:1"):
            with get_client(sync_client=True) as client:
                held = client.read_global_concurrency_limit_by_name(LIMIT)
            assert (held.limit, held.active_slots) == (1, 1)
            waited = other_writer("http://127.0.0.1:1", {"PREFECT_API_URL": api})
        assert waited.returncode != 0
        assert f"the Prefect concurrency limit {LIMIT!r} at {api}" in waited.stderr
        assert other_writer("http://127.0.0.1:1", {"PREFECT_API_URL": api}).returncode == 0
