"""Slow end-to-end: the champions in another process, `mlflow models serve`, the MLflow UI."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from mlflow import MlflowClient

from tests.conftest import headless, venv_bin
from tests.registry.conftest import free_port, start_process, stop_group, wait_http
from tests.registry.test_register_local import GEN, REST, run_stage

pytestmark = pytest.mark.slow


@pytest.fixture
def champions(
    tmp_path: Path, tiny_models: dict[str, Path], write_report: Callable[..., Path]
) -> None:
    """Both champions registered in the per-test SQLite store."""
    run_stage(
        write_report(fd={"vae": 12.0, "gan": 8.0}, psnr={"vae": 20.0, "gan": 18.0}),
        tmp_path / "o",
    )


def test_champion_loads_in_a_fresh_interpreter_without_the_repo(
    champions: None, tmp_path: Path
) -> None:
    script = (
        # as if genpipe were not installed: no editable-install finder, no src/ on the path
        "import sys; sys.meta_path[:] = [f for f in sys.meta_path"
        " if not getattr(f, '__module__', '').startswith('__editable__')]\n"
        "sys.path[:] = [p for p in sys.path if not p.endswith('/src')]\n"
        "import importlib.util; assert importlib.util.find_spec('genpipe') is None\n"
        "import mlflow, pandas as pd\n"
        f"m = mlflow.pyfunc.load_model('models:/{GEN}@champion')\n"
        "print(len(m.predict(pd.DataFrame({'n': [4], 'seed': [1]}))))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, env=os.environ
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "4"


def post(url: str, payload: dict) -> dict:
    req = urllib.request.Request(
        url, json.dumps(payload).encode(), {"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=120) as resp:
            return json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        raise AssertionError(f"{url}: HTTP {exc.code}: {exc.read()[:2000]!r}") from None


def test_mlflow_models_serve_answers_for_both_tasks(champions: None, tmp_path: Path) -> None:
    servers = {}
    try:
        for name in (GEN, REST):
            port = free_port()
            args = [str(venv_bin() / "mlflow"), "models", "serve", "-m", f"models:/{name}@champion"]
            args += [
                "--env-manager",
                "local",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--workers",
                "1",
            ]
            servers[name] = (
                start_process(args, tmp_path / f"{name}.log"),
                f"http://127.0.0.1:{port}",
            )
        for name, (proc, url) in servers.items():
            try:
                wait_http(f"{url}/ping", timeout=240, proc=proc)
            except Exception as exc:
                raise AssertionError(
                    f"{exc}\n" + (tmp_path / f"{name}.log").read_text()[-3000:]
                ) from None

        gen = post(f"{servers[GEN][1]}/invocations", {"dataframe_records": [{"n": 3, "seed": 0}]})[
            "predictions"
        ]
        assert [row["index"] for row in gen] == [0, 1, 2]
        pixels = np.asarray([row["image"] for row in gen])
        assert pixels.shape == (3, 64) and 0 <= pixels.min() <= pixels.max() <= 1

        noisy = np.random.default_rng(0).random(64).tolist()
        mask = [0.0] * 32 + [1.0] * 32
        body = {
            "dataframe_records": [{"image": noisy, "mask": mask}, {"image": noisy, "mask": None}]
        }
        restored = post(f"{servers[REST][1]}/invocations", body)["predictions"]
        assert len(restored) == 2 and all(len(row["restored"]) == 64 for row in restored)
        unmasked = post(
            f"{servers[REST][1]}/invocations", {"dataframe_records": [{"image": noisy}]}
        )
        np.testing.assert_allclose(
            unmasked["predictions"][0]["restored"], restored[1]["restored"], atol=1e-5
        )
    finally:
        for proc, _ in servers.values():
            stop_group(proc)


def test_mlflow_ui_shows_the_champion_alias(
    mlflow_server: str, chromium: str, tmp_path: Path
) -> None:
    import mlflow

    from genpipe.registry import mlflow_registry

    mlflow.set_tracking_uri(mlflow_server)
    client = MlflowClient()
    name = f"ui-{uuid.uuid4().hex[:8]}"
    client.create_registered_model(name)
    run_id = client.create_run("0").info.run_id
    tags = {"genpipe.family": "gan", "genpipe.metric_value": "8.0", "genpipe.protocol_hash": "p"}
    version = client.create_model_version(
        name, f"runs:/{run_id}/model", run_id=run_id, tags=tags
    ).version
    mlflow_registry.point(name, champion=str(version), challenger=str(version), decision="d")
    assert mlflow_registry.model_state(name).aliases["champion"] == str(version)

    page = f"{mlflow_server}/#/models/{name}"
    dom = headless(chromium, "--dump-dom", page)
    assert dom.returncode == 0, dom.stderr[-2000:]
    (tmp_path / "registry.html").write_text(dom.stdout)
    assert name in dom.stdout
    # the alias chip, not the `genpipe.champion_history` tag that also contains the word
    assert re.search(r">@(&nbsp;|\s)champion<", dom.stdout), (
        "no `@ champion` alias chip on the page"
    )
    shot = tmp_path / "registry.png"
    headless(chromium, f"--screenshot={shot}", page)
    assert shot.exists() and shot.stat().st_size > 10_000
