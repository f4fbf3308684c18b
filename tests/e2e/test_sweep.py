"""`make sweep` as a user runs it: members are DVC experiments run side by side by the Prefect
flow, a failed member fails only itself, a rerun reruns nothing DVC holds, MLflow nests each
member's run under the sweep's, and retention drops a removed member's runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow import MlflowClient

from tests.conftest import venv_bin
from tests.e2e.test_dvc_pipeline import commit, dvc, repro

pytestmark = pytest.mark.slow

# three members: two seeds (the fewest with a spread; seed 0 is the baseline's own params, so DVC
# restores it from the run-cache, as in the README's `train.seed=range(0,3)`), and one whose image
# folder is missing (it fails in its first data stage, before any training)
SWEEP = "train.seed=range(0,2); data.dataset=folder data.folder=no-such-folder"
FAILING = "dataset-folder_folder-no-such-folder"


def env() -> dict[str, str]:
    """As `make sweep` runs it: the venv first, and as long for Prefect's temporary server to
    start as the Makefile allows (a busy machine needs more than Prefect's 20 s)."""
    return {
        **os.environ,
        "PATH": f"{venv_bin()}{os.pathsep}{os.environ['PATH']}",
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "300",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }


def sweep(project: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pipelines.sweep", *args],
        cwd=project,
        env=env(),
        capture_output=True,
        text=True,
        timeout=3600,
    )


def held(project: Path) -> set[str]:
    """Experiment names `dvc exp show` lists on the baseline."""
    done = dvc(project, "exp", "show", "--json")
    assert done.returncode == 0, done.stderr
    return {
        exp["name"]
        for baseline in json.loads(done.stdout)
        for exp in baseline.get("experiments") or []
        if exp.get("name")
    }


def test_a_sweep_of_three_with_one_failing(project: Path) -> None:
    repro(project, "decide")  # the baseline as far as members go (a sweep never registers)
    commit(project, "baseline")

    done = sweep(project, SWEEP, "--jobs", "2", "-n", "e2e")
    out = done.stdout + done.stderr
    assert done.returncode == 1, out  # one member failed; the sweep still reports them all
    assert "3 members, 1 failed" in out, out[-3000:]
    assert FAILING in out.split("Failed members")[1]
    assert "Multi-seed verdict on digits (2 training seeds" in out
    assert "register.seed_spread.generation=" in out

    names = held(project)
    seeds = {n for n in names if n.startswith("seed-")}
    assert len(seeds) == 2 and not any(n.startswith(FAILING) for n in names), names
    only_changed = dvc(project, "exp", "show", "--only-changed", "--csv")
    assert all(n in only_changed.stdout for n in seeds)

    client = MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow/mlflow.db'}")
    experiment = client.get_experiment_by_name("genpipe-digits").experiment_id
    parents = client.search_runs([experiment], "tags.`genpipe.stage` = 'sweep'")
    assert len(parents) == 1
    parent = parents[0].info.run_id
    children = client.search_runs([experiment], f"tags.`mlflow.parentRunId` = '{parent}'")
    by_member = {c.data.tags["genpipe.sweep_member"]: c for c in children}
    assert set(by_member) >= seeds and len(by_member) == 3
    for name in seeds:
        child = by_member[name]
        assert child.info.status == "FINISHED"
        assert "generation.fd.vae" in child.data.metrics
        nested = client.search_runs(
            [experiment], f"tags.`mlflow.parentRunId` = '{child.info.run_id}'"
        )
        stages = {r.data.tags["genpipe.stage"] for r in nested}
        if child.data.params["train.seed"] == "0":  # restored: no stage of it ran
            assert not stages & {"train_vae", "train_gan", "evaluate"}, stages
        else:
            assert stages >= {"train_vae", "train_gan", "evaluate"}, stages
    failed = next(c for n, c in by_member.items() if n not in seeds)
    assert failed.info.status == "FAILED"
    assert "sweep.md" in [a.path for a in client.list_artifacts(parent)]

    # the same sweep again: the two held members are not rerun, the failed one is tried again
    again = sweep(project, SWEEP, "--jobs", "2", "-n", "e2e")
    assert again.returncode == 1, (again.stdout + again.stderr)[-3000:]
    assert (again.stdout + again.stderr).count("held by `dvc exp show` already") == 2
    assert len(client.search_runs([experiment], "tags.`genpipe.stage` = 'sweep'")) == 1

    # retention: a removed member's runs go, the others' stay
    removed = sorted(seeds)[0]
    assert dvc(project, "exp", "remove", removed).returncode == 0
    gc = subprocess.run(
        [sys.executable, "-m", "pipelines.sweep_gc"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=600,
        env=env(),
    )
    assert gc.returncode == 0, gc.stdout + gc.stderr
    remaining = {
        r.data.tags["genpipe.sweep_member"]
        for r in client.search_runs([experiment], "tags.`genpipe.stage` = 'sweep_member'")
    }
    assert removed not in remaining and (seeds - {removed}) <= remaining
