"""Shared fixtures: an isolated environment per test, tiny real data, a loopback HTTP mirror."""

from __future__ import annotations

import functools
import http.server
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest

from tests.netns import NetnsLab, netns_available

REPO = Path(__file__).resolve().parents[1]
SHARED_MNIST = REPO.parent / "shared" / "datasets" / "mnist"


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist, each worker's torch (in-process, and in the stages it starts) takes its
    share of the cores instead of every core: GENPIPE_CPU_SHARE = the number of workers."""
    workers = os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    if workers is None:
        return
    import torch

    from genpipe import cpu

    os.environ.update(cpu.share_env(int(workers)))
    if (threads := cpu.stage_threads(0)) is not None:
        torch.set_num_threads(threads)


# The longest modules (or xdist groups), longest first, as the CI log's --durations gives them:
# pytest-xdist hands out work in this order (the Makefile's --no-loadscope-reorder: its default
# would put the groups with the most tests first), so the longest start at once and the short
# ones fill in at the end.
LONGEST = (
    "tests/e2e/test_multihost.py",  # with test_multihost_sweep.py, one group on one worker
    "tests/e2e/test_multihost_sweep.py",
    "tests/e2e/test_readme.py",
    "tests/e2e/test_dvc_pipeline.py",
    "tests/e2e/test_sweep.py",
    "tests/e2e/test_team_registry.py",
    "tests/services/test_faults.py",
    "tests/services/test_team_flow.py",
    "tests/pipelines/test_dispatch_live.py",
    "tests/services/test_team_services.py",
    "tests/e2e/test_distributed_pipeline.py",
    "tests/pipelines/test_real_pipeline.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """`slow` tests first, LONGEST's ahead of them: pytest-xdist hands tests out in this order as
    workers free up, so each worker starts on a long test and the short ones fill in at the end,
    instead of one long test running alone after everything else has finished."""

    def rank(item: pytest.Item) -> tuple[bool, int]:
        module = item.nodeid.split("::")[0]
        slow = item.get_closest_marker("slow") is not None
        return not slow, LONGEST.index(module) if module in LONGEST else len(LONGEST)

    items.sort(key=rank)


@pytest.fixture(scope="session")
def migrated_mlflow_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty MLflow SQLite store whose schema is created once per session (migrations are slow)."""
    import mlflow

    path = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"
    mlflow.MlflowClient(tracking_uri=f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture(autouse=True)
def isolated_stores(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, migrated_mlflow_db: Path
) -> Iterator[Path]:
    """Every test gets its own MLflow SQLite store (a copy of the migrated empty one), artifact
    root and PREFECT_HOME."""
    store = tmp_path / "stores"
    store.mkdir()
    shutil.copy(migrated_mlflow_db, store / "mlflow.db")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{store / 'mlflow.db'}")
    monkeypatch.setenv("GENPIPE_ARTIFACT_ROOT", str(store / "artifacts"))
    monkeypatch.setenv("PREFECT_HOME", str(store / "prefect"))
    monkeypatch.delenv("GENPIPE_PIPELINE_RUN_ID", raising=False)
    monkeypatch.delenv("GENPIPE_ROOT", raising=False)
    # mlflow.set_tracking_uri() from an earlier in-process test would beat the env var: reset it.
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{store / 'mlflow.db'}")
    yield store
    mlflow.set_tracking_uri(None)


@pytest.fixture(scope="session")
def digits_splits() -> dict:
    """Real sklearn digits (8x8) as uint8 [N, 1, 8, 8] splits, 60/20/20 by index (no stratification)."""
    from sklearn.datasets import load_digits

    from genpipe.data.dataset import Split

    d = load_digits()
    images = np.round(d.images * (255 / 16)).astype(np.uint8)[:, None]  # [1797, 1, 8, 8]
    labels = d.target.astype(np.int64)
    idx = np.random.default_rng(0).permutation(len(labels))
    cut1, cut2 = int(0.6 * len(idx)), int(0.8 * len(idx))
    parts = {"train": idx[:cut1], "val": idx[cut1:cut2], "test": idx[cut2:]}
    return {name: Split(images[i], labels[i]) for name, i in parts.items()}


@pytest.fixture
def digits_prepared(tmp_path: Path, digits_splits: dict) -> Path:
    """A prepared dataset folder (the `prepare` stage's format) holding real digits."""
    from genpipe.data.dataset import save_prepared

    folder = tmp_path / "prepared"
    save_prepared(
        folder, digits_splits, {"dataset": "digits", "classes": [str(i) for i in range(10)]}
    )
    return folder


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def serve_dir() -> Iterator[Callable[[Path], str]]:
    """Factory: serve a folder over HTTP on 127.0.0.1 (random port); returns the base URL."""
    servers: list[http.server.ThreadingHTTPServer] = []

    def start(folder: Path) -> str:
        handler = functools.partial(_QuietHandler, directory=str(folder))
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="session")
def mnist_files() -> Path:
    """The official MNIST test-split files in ../shared (never copied into the repo)."""
    if not (SHARED_MNIST / "t10k-images-idx3-ubyte.gz").exists():
        pytest.fail(f"{SHARED_MNIST} is missing: the shared MNIST mirror files are required")
    return SHARED_MNIST


def dvc_stages(root: Path = REPO) -> list[str]:
    """dvc.yaml's stages as DVC names them (a matrix stage once per item: score_val@vae)."""
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        return [s.name for s in repo.index.stages if getattr(s, "name", None)]


def copy_project(dest: Path) -> Path:
    """Copy the tracked project (plus uncommitted files) into `dest` and make it a git repo."""
    files = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    for rel in files:
        src = REPO / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    for args in (
        ["init", "-q"],
        ["add", "-A"],
        ["-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "init"],
    ):
        subprocess.run(["git", *args], cwd=dest, check=True, capture_output=True)
    return dest


@pytest.fixture
def project_copy(tmp_path: Path) -> Path:
    """A throwaway copy of the project in its own git repo, for real `dvc repro` runs."""
    return copy_project(tmp_path / "project")


def venv_bin() -> Path:
    """The bin/ folder of the interpreter running the tests (dvc, mlflow, prefect live there)."""
    return Path(sys.executable).parent


def link_venv(project: Path) -> None:
    """What stands for `make install` in a project copy: the tests' venv as its .venv, and the
    files make installs from older than the venv's stamp (a copy's are new: make would reinstall)."""
    (project / ".venv").symlink_to(venv_bin().parent)
    for name in ("pyproject.toml", "requirements.lock"):
        os.utime(project / name, (0, 0))


@pytest.fixture
def netns_lab() -> Iterator[Callable[[Sequence[str]], NetnsLab]]:
    """Factory: hosts as network namespaces on a private bridge (tests/netns.py), torn down after
    the test even when it fails. Skipped (visibly) where namespaces cannot be made (not root)."""
    if (why := netns_available()) is not None:
        pytest.skip(why)
    labs: list[NetnsLab] = []

    def make(names: Sequence[str]) -> NetnsLab:
        labs.append(NetnsLab(names))
        return labs[-1]

    yield make
    for lab in labs:
        lab.close()


@pytest.fixture(scope="session")
def chromium() -> str:
    """The chromium binary, installed from Debian packages when missing. Each xdist worker has
    its own session: the lock lets one install it while the others wait, then find it."""
    from filelock import FileLock

    with FileLock(Path(tempfile.gettempdir()) / "genpipe-tests-chromium.lock"):
        found = shutil.which("chromium")
        if found is None:
            env = os.environ | {"DEBIAN_FRONTEND": "noninteractive"}
            apt = ["apt-get", "-o", "DPkg::Lock::Timeout=600"]  # beside another apt-get: wait
            subprocess.run([*apt, "update", "-q"], check=True, capture_output=True, env=env)
            subprocess.run([*apt, "install", "-y", "-q", "chromium", "chromium-driver"],
                           check=True, capture_output=True, env=env)  # fmt: skip
            found = shutil.which("chromium")
    assert found, "chromium is not installed and apt-get could not install it"
    return found


def headless(chromium: str, *args: str) -> subprocess.CompletedProcess:
    """Headless Chromium with no sync, updates or background requests; `args` add to them."""
    with tempfile.TemporaryDirectory() as profile:
        flags = [
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            f"--user-data-dir={profile}", "--window-size=1400,900", "--virtual-time-budget=20000",
        ]  # fmt: skip
        return subprocess.run(
            [chromium, *flags, *args], capture_output=True, text=True, timeout=180
        )
