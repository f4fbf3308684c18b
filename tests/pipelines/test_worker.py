"""The environment a worker host gives its stage runs."""

from __future__ import annotations

from genpipe.config import load_params
from genpipe.cpu import SHARE_ENV
from genpipe.settings import project_root
from pipelines.worker import worker_env

CONFIG = load_params(project_root() / "params.yaml").orchestration

ADDRESSES = {
    "PREFECT_API_URL": "http://127.0.0.1:1/api",
    "MLFLOW_TRACKING_URI": "http://127.0.0.1:2",
    "GENPIPE_DVC_REMOTE_URL": "ssh://genpipe@127.0.0.1:3/srv/dvc",
}


def test_a_worker_running_several_stages_splits_the_cores_among_them() -> None:
    assert worker_env(ADDRESSES, CONFIG, limit=1)[SHARE_ENV] == "1"
    assert worker_env(ADDRESSES, CONFIG, limit=2)[SHARE_ENV] == "2"
    # a host that already shares its cores (GENPIPE_CPU_SHARE set by whoever started the worker)
    assert worker_env({**ADDRESSES, SHARE_ENV: "2"}, CONFIG, limit=3)[SHARE_ENV] == "6"


def test_a_flow_against_an_unreachable_api_says_so_in_one_line(tmp_path) -> None:
    """`python -m pipelines` with PREFECT_API_URL naming nothing: one line with the address and
    what to type, no traceback, and params.yaml untouched."""
    import os
    import socket
    import subprocess
    import sys

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}/api"
    params = (project_root() / "params.yaml").read_bytes()
    done = subprocess.run(
        [sys.executable, "-m", "pipelines", "-S", "vae.epochs=1"],
        env={**os.environ, "PREFECT_API_URL": url},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 2
    assert f"PREFECT_API_URL={url} cannot be used" in done.stderr
    assert "make services-up" in done.stderr and "Traceback" not in done.stderr
    assert (project_root() / "params.yaml").read_bytes() == params
