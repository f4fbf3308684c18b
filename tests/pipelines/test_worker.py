"""The environment a worker host gives its stage runs."""

from __future__ import annotations

import pytest

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


@pytest.mark.slow  # a real server process, its database created from scratch
def test_without_an_api_url_a_flow_gets_a_temporary_api_on_a_port_the_os_picked() -> None:
    """Prefect picks its temporary server's port at random in 8000-8999, checked before binding:
    two flows starting at once (two users, two test workers) could share one server, and one of
    them loses it mid-run when the other exits. genpipe's port comes from the OS; the server
    stops when the process exits, as Prefect's own does."""
    import os
    import subprocess
    import sys

    import httpx

    code = (
        "from prefect.client.orchestration import get_client\n"
        "from prefect.settings import PREFECT_API_URL, temporary_settings\n"
        "from genpipe.services.servers import prefect_api\n"
        "with prefect_api(), get_client(sync_client=True) as client:\n"
        "    print(PREFECT_API_URL.value(), client.api_healthcheck())\n"
        "with temporary_settings({PREFECT_API_URL: 'http://127.0.0.1:1/api'}), prefect_api():\n"
        "    print(PREFECT_API_URL.value())\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"] = "600"  # a busy box
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=900
    )
    assert done.returncode == 0, done.stderr[-3000:]
    (api, health), (unchanged,) = (line.split() for line in done.stdout.splitlines())
    assert api.startswith("http://127.0.0.1:") and health == "None", done.stdout
    assert httpx.URL(api).port not in range(8000, 9000), api
    assert unchanged == "http://127.0.0.1:1/api", "a set PREFECT_API_URL starts nothing"
    try:
        httpx.get(f"{api}/health", timeout=5)
    except httpx.ConnectError:
        pass
    else:
        raise AssertionError(f"the temporary server at {api} still answers after its process")
