"""Data-parallel training stages for real: `dvc repro` with 2 processes, a rank killed mid-run,
and 2 machines (network namespaces) meeting over TCP."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
import torch

from genpipe.models.checkpoint import read_record
from tests.e2e.test_dvc_pipeline import commit, dvc, kill_after_first_checkpoint, ran, repro
from tests.e2e.tiny import shrink_params
from tests.netns import NetnsLab

pytestmark = pytest.mark.slow


def processes(project: Path, n: int, **extra: object) -> None:
    shrink_params(
        project,
        {"evaluate": {"draws": 2}, "runtime": {"distributed": {"nproc_per_node": n, **extra}}},
    )


def weights(path: Path) -> dict[str, torch.Tensor]:
    return read_record(path)["state_dict"]


def test_two_processes_train_a_stage_that_loads_and_scores_like_one(project: Path) -> None:
    processes(project, 1)
    repro(project, "train_vae")
    one = weights(project / "data/models/vae/model.pt")

    processes(project, 2)  # runtime is not a dependency: force the stage to compare
    out = repro(project, "-f", "-s", "train_vae")
    assert "rank 1 of 2 joined (gloo)" in out
    two = weights(project / "data/models/vae/model.pt")
    run = json.loads((project / "data/models/vae/run.json").read_text())
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow' / 'mlflow.db'}")
    assert client.get_run(run["run_id"]).data.tags["genpipe.processes"] == "2"
    for name, value in one.items():
        gap = (value - two[name]).abs().max().item()
        assert gap < 1e-4, f"{name}: 2 processes and 1 differ by {gap:.2e}"  # 2 epochs of Adam

    # the VAE of 2 processes loads and is scored as one process's would be (the GAN's two ranks:
    # tests/training/test_distributed.py)
    processes(project, 1)
    rest = ran(repro(project, "score_val@vae"))
    assert "train_evaluator" in rest and "train_vae" not in rest
    scored = json.loads((project / "data/val/vae.json").read_text())
    assert scored["val"]["vae"]["fd"] > 0


def test_a_killed_rank_fails_the_stage_and_dvc_repro_resumes(project: Path) -> None:
    processes(project, 2)
    shrink_params(
        project, {"gan": {"epochs": 30, "snapshots": 2}, "runtime": {"checkpoint_every": 2}}
    )
    repro(project, "validate")
    commit(project, "data")
    kill_after_first_checkpoint(project, "train_gan", lambda p: p.environ().get("RANK") == "1")
    resumed = repro(project, "train_gan")
    assert "resuming gan from" in resumed
    assert (project / "data/models/gan/model.pt").exists()


def test_two_machines_meet_over_tcp_and_train_one_stage(
    project: Path, netns_lab: Callable[[Sequence[str]], NetnsLab], tmp_path: Path
) -> None:
    lab = netns_lab(["node0", "node1"])
    shrink_params(
        project,
        {
            "evaluate": {"draws": 2},
            "runtime": {"distributed": {"nnodes": 2, "rdzv_endpoint": "node0:29511"}},
        },
    )
    repro(project, "validate")
    argv = [
        sys.executable, "-m", "genpipe.stages.train", "--task", "vae", "--params", "params.yaml",
        "--prepared", "data/prepared", "--out", "data/models/vae",
        "--work", ".genpipe/work/train_vae", "--plots", "data/plots/train_vae.csv",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    started = []
    for rank, name in enumerate(("node0", "node1")):
        log = tmp_path / f"{name}.log"
        started.append(
            (
                log,
                lab[name].popen(
                    argv, log_path=log, env={**env, "GENPIPE_NODE_RANK": str(rank)}, cwd=project
                ),
            )
        )
    for log, proc in started:
        assert proc.wait(timeout=900) == 0, log.read_text()[-3000:]
    assert "rank 1 of 2 joined (gloo)" in started[1][0].read_text()
    model = weights(project / "data/models/vae/model.pt")  # written by node 0 (global rank 0)
    assert all(torch.isfinite(v).all() for v in model.values())
    assert json.loads((project / "data/models/vae/run.json").read_text())["run_id"]
    assert dvc(project, "status", "train_vae").returncode == 0
