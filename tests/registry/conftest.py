"""Registry fixtures: tiny real models, a report.json writer, and a real `mlflow server`."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch

from genpipe.evaluation.schema import Incumbent, Incumbents, Report, TaskIncumbent
from tests.conftest import venv_bin
from tests.params import section

SHAPE = (1, 8, 8)


@pytest.fixture
def tiny_models(tmp_path: Path) -> dict[str, Path]:
    """data/models/{vae,gan} with a tiny untrained VAE and generator (8x8 digits shape)."""
    from genpipe.models import save_model
    from genpipe.models.gan import Generator
    from genpipe.models.vae import VAE

    torch.manual_seed(0)
    dirs = {"vae": tmp_path / "models" / "vae", "gan": tmp_path / "models" / "gan"}
    save_model(
        dirs["vae"] / "model.pt", VAE(section("vae", latent_dim=4, base_channels=4), SHAPE), "vae"
    )
    gen = Generator(section("gan", latent_dim=4, base_channels=4), SHAPE).eval()
    save_model(dirs["gan"] / "snapshots" / "epoch_0002.pt", gen, "generator")
    save_model(dirs["gan"] / "model.pt", gen, "generator")
    for family, folder in dirs.items():
        (folder / "run.json").write_text(
            json.dumps({"run_id": f"run-{family}", "experiment_id": "0"})
        )
    return dirs


def metric(value: float, half_width: float | None = 0.1) -> dict:
    ci = None if half_width is None else [value - half_width, value + half_width]
    return {"value": value, "ci": ci}


def weights(path: Path) -> str:
    from genpipe.models.checkpoint import read_record, weights_hash

    return weights_hash(read_record(path))


def make_report(
    models: dict[str, Path],
    fd: dict[str, float],
    psnr: dict[str, float],
    protocol_hash: str = "proto-1",
    half_width: float | None = 0.1,
) -> Report:
    """A report.json (genpipe.evaluation.schema.Report) for the tiny models, with chosen numbers."""
    methods = {"vae": "vae_amortised", "gan": "gan_latent_search"}
    files = {
        "vae": models["vae"] / "model.pt",
        "gan": models["gan"] / "snapshots" / "epoch_0002.pt",
    }
    evaluate = section("evaluate", latent_search={"steps": 5, "restarts": 2})
    baseline = {"mean": {"psnr": metric(10.0)}, "per_corruption": {}}
    return Report.model_validate(
        {
            "protocol_hash": protocol_hash,
            "protocol": {
                "evaluate": evaluate.model_dump(),
                **dict.fromkeys(("reference_split", "real_floor", "ci", "snapshot_selection"), ""),
                "corruptions": [],
                "panel_rows": [],
                "n_restore": 16,
                "n_samples": 100,
                "n_reference": 100,
                "ssim": {},
            },
            "dataset": "digits",
            "data_hash": "data-1",
            "evaluator_hash": "eval-1",
            "evaluator_accuracy": 0.99,
            "models": {
                "vae": {
                    "checkpoint": str(files["vae"]),
                    "weights_hash": weights(files["vae"]),
                    "run_id": "run-vae",
                },
                "gan": {
                    "checkpoint": str(files["gan"]),
                    "weights_hash": weights(files["gan"]),
                    "run_id": "run-gan",
                    "selected_snapshot": "epoch_0002",
                },
            },
            "generation": {
                fam: {"fd": metric(fd[fam], half_width), "kid": metric(0.01, half_width)}
                for fam in ("vae", "gan")
            }
            | {"real": {"fd": metric(0.0, half_width)}},
            "reference": {"split": "test", "recognised": 0.9},
            "restoration": {
                fam: {
                    "best_method": methods[fam],
                    "methods": {
                        methods[fam]: {
                            "mean": {"psnr": metric(psnr[fam], half_width), "ssim": metric(0.5)},
                            "per_corruption": {},
                        },
                        "worse_method": {
                            "mean": {"psnr": metric(psnr[fam] - 5, half_width)},
                            "per_corruption": {},
                        },
                    },
                }
                for fam in ("vae", "gan")
            }
            | {"baselines": {"corrupted": baseline, "classical": baseline}},
        }
    )


def incumbents(
    report: Report,
    rolled_back: dict[str, list[str]] | None = None,
    **champions: Incumbent | None,
) -> Incumbents:
    """data/eval/incumbents.json beside `report`: the given champions (none for other tasks)."""
    return Incumbents(
        protocol_hash=report.protocol_hash,
        tasks={
            task: TaskIncumbent(
                champion=champions.get(task), rolled_back=(rolled_back or {}).get(task, [])
            )
            for task in ("generation", "restoration")
        },
    )


@pytest.fixture
def write_report(tmp_path: Path, tiny_models: dict[str, Path]) -> Callable[..., Path]:
    """Factory: write a report.json for the tiny models; returns its path."""
    counter = iter(range(1000))

    def write(**kwargs: object) -> Path:
        path = tmp_path / "eval" / f"report{next(counter)}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(make_report(tiny_models, **kwargs).model_dump_json())  # type: ignore[arg-type]
        return path

    return write


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process serving {url} exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"{url} did not answer within {timeout}s")


def stop_group(proc: subprocess.Popen, timeout: float = 10.0) -> None:
    """SIGTERM the process group, then SIGKILL it if it lingers."""
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout)


def start_process(
    args: list[str], log: Path, env: dict[str, str] | None = None
) -> subprocess.Popen:
    full_env = (
        os.environ | {"PATH": f"{venv_bin()}{os.pathsep}{os.environ.get('PATH', '')}"} | (env or {})
    )
    with open(log, "wb") as fh:
        return subprocess.Popen(
            args, stdout=fh, stderr=subprocess.STDOUT, env=full_env, start_new_session=True
        )


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real `mlflow server` (SQLite backend, local artifact root) on 127.0.0.1; yields its URL."""
    root = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    args = [
        str(venv_bin() / "mlflow"), "server",
        "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
        "--artifacts-destination", str(root / "artifacts"),
        "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
    ]  # fmt: skip
    # no GenAI job runner: it forks seven huey consumers, far too many for a 2-core box
    proc = start_process(
        args, root / "server.log", env={"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/health", timeout=300, proc=proc)  # a busy 2-core box is slow to start it
    except Exception:
        stop_group(proc)
        raise RuntimeError((root / "server.log").read_text()[-3000:]) from None
    yield url
    stop_group(proc)
