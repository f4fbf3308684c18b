"""Fixtures for the flow tests: Prefect APIs (the test harness, or a real `prefect server`), a
fake-stage project copy."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


def stage_names(dvc_yaml: Path) -> list[str]:
    """The stages of a dvc.yaml without foreach/matrix, in file order."""
    import yaml

    return list(yaml.safe_load(dvc_yaml.read_text())["stages"])


FAKE_STAGES = stage_names(HERE / "fake_dvc.yaml")


@pytest.fixture(autouse=True)
def restore_cwd(monkeypatch: pytest.MonkeyPatch) -> None:
    """The flow moves to its project folder (DVC's API works from there): come back after."""
    monkeypatch.chdir(Path.cwd())


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    """A temporary Prefect API (SQLite) shared by the session: it takes seconds to start."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture
def fake_project(project_copy: Path) -> Path:
    """The project copy with dvc.yaml replaced by the same stage graph of fake, fast stages.

    params.yaml is the project's own (copied with the project).
    """
    shutil.copy(HERE / "fake_stage.py", project_copy / "fake_stage.py")
    shutil.copy(HERE / "fake_dvc.yaml", project_copy / "dvc.yaml")
    (project_copy / "dvc.lock").unlink(missing_ok=True)
    import yaml  # the policy names the real graph's stages; keep those of the fake one

    params = yaml.safe_load((project_copy / "params.yaml").read_text())
    pools = params["orchestration"]["pools"]
    params["orchestration"]["pools"] = {s: p for s, p in pools.items() if s in FAKE_STAGES}
    (project_copy / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return project_copy


def trace(project: Path, stage: str) -> list[dict]:
    """The fake stage's records: one at start of each attempt, one at the end of each success."""
    import json

    path = project / "trace" / f"{stage}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


# The real stages on digits, as small as they go: seconds per stage on two CPU cores.
TINY_REAL_PARAMS: dict[str, object] = {
    "data.max_images": 400,
    "runtime.device": "cpu",
    "runtime.num_workers": 0,
    "train.batch_size": 64,
    "runtime.checkpoint_every": 1,
    "vae.epochs": 1,
    "vae.kl_warmup_epochs": 0,
    "gan.epochs": 1,
    "gan.snapshots": 1,
    "evaluator.epochs": 1,
    "evaluator.min_test_accuracy": 0.0,
    "evaluate.draws": 2,
    "evaluate.bootstrap": 10,
    "evaluate.kid_subset_size": 20,
    "evaluate.kid_subsets": 2,
    "evaluate.n_restore": 8,
    "evaluate.latent_search": {"steps": 2, "restarts": 1, "lr": 0.05, "prior_weight": 0.001},
    "evaluate.snapshot_selection_samples": 20,
}


def stop_group(proc: subprocess.Popen, grace: float = 20.0) -> None:
    """SIGTERM a process group this test started, then SIGKILL it."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            continue


@contextlib.contextmanager
def prefect_server(home: Path) -> Iterator[str]:
    """A real `prefect server` on a free port (PREFECT_HOME `home`); yields its API URL."""
    from tests.conftest import venv_bin

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    api = f"http://127.0.0.1:{port}/api"
    home.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env.update(PREFECT_HOME=str(home), PREFECT_SERVER_ANALYTICS_ENABLED="false")
    server = subprocess.Popen(
        [venv_bin() / "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=(home / "server.log").open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 240
        while True:
            assert server.poll() is None, (home / "server.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "prefect server not healthy after 240 s"
            try:
                with urllib.request.urlopen(f"{api}/health", timeout=2):
                    break
            except OSError:
                time.sleep(0.5)
        yield api
    finally:
        stop_group(server)
