"""One flow run, three hosts: the controller dispatches stages to workers over TCP, data moves
through the DVC remote, results land on the team's MLflow server (tests/e2e/multihost.py).

The tests share one team (services and workers take a minute to start): the fault test comes
last, since it leaves worker-a cut off and worker-b dead, and it registers under its own prefix
and trains with its own seed, so it neither restores nor scores the first test's results."""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.multihost import (
    Team,
    bring_up,
    host_of,
    logs,
    mlflow_stage_runs,
    registry,
    stage_flow_runs,
    start_team,
    trainings_on,
)
from tests.netns import NetnsLab, netns_available

# one worker runs the module, so its hosts and servers (the module fixture `team`) start once
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("multihost")]

WORKERS = {"worker-a": ["genpipe-gpu", "genpipe-cpu"], "worker-b": ["genpipe-gpu"]}
SPARE, SPARE_POOLS = "worker-c", ("genpipe-gpu", "genpipe-cpu")  # joins in the fault test only
DVC = str(Path(sys.executable).parent / "dvc")
# the fault test's trainings: long enough that both are still training when the faults strike
# (seconds of start-up skew between two hosts against half a minute of training each)
TRAINING = {
    "vae": {"epochs": 25},
    "gan": {"epochs": 25},
    "runtime": {"checkpoint_every": 10, "log_images_every": 20},
}
DEFAULT_PREFIX, FAULTS_PREFIX = "genpipe", "faults"  # register.model_name_prefix per test


@pytest.fixture(scope="module")
def team(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Team]:
    if (why := netns_available()) is not None:
        pytest.skip(why)
    with NetnsLab(["ctl", *WORKERS, SPARE]) as lab:  # its exit kills every host's processes
        team = start_team(lab, tmp_path_factory.mktemp("multihost"), TRAINING)
        try:
            bring_up(team)
            for host, pools in WORKERS.items():
                for pool in pools:
                    team.start_worker(host, pool)
            team.wait_workers()
            yield team
        finally:
            team.close()  # the services


def test_one_flow_run_trains_on_two_workers_and_the_controller_only_restores(team: Team) -> None:
    short = ("vae.epochs=2", "gan.epochs=2")  # where stages run, not how long they train
    code, result, log = team.flow_result(team.run_flow("gan.lr.generator=0.0002", *short))
    assert code == 0 and result is not None, log[-6000:] + logs(team, ["worker"])
    stages = result["stages"]
    run_id = result["pipeline_run_id"]

    # where each stage ran: trainings and evaluate on workers, the rest on the controller
    hosts = {s: v["host"] for s, v in stages.items()}
    assert {hosts["train_vae"], hosts["train_gan"]} == {"worker-a", "worker-b"}
    assert hosts["train_evaluator"] == hosts["evaluate"] == "worker-a"  # the cpu pool's host
    assert all(hosts[s] is None for s in ("download", "prepare", "validate", "decide"))
    assert all(stages[s]["outcome"] == "ran" for s in stages)

    # MLflow: each training ran once in this pipeline run, on its worker
    runs = mlflow_stage_runs(team, run_id)
    for stage in ("train_vae", "train_gan", "train_evaluator", "evaluate"):
        assert [r.data.tags["genpipe.host"] for r in runs[stage]] == [hosts[stage]], stage
    assert {r.data.tags["genpipe.host"] for rs in runs.values() for r in rs} <= {
        "ctl",
        "worker-a",
        "worker-b",
    }

    # the controller took the workers' results from the remote and ran none of those stages
    project = team.project
    for stage in ("train_vae", "train_gan", "train_evaluator", "evaluate"):
        assert f"Running stage '{stage}'" not in log, stage
        assert stages[stage]["timings"]["accept"] > 0, stage
    assert (project / "data/models/vae/model.pt").is_file()
    assert (project / "data/models/gan/model.pt").is_file()
    assert (project / "data/eval/report.json").is_file()
    assert (project / "data/plots/train_evaluator.csv").is_file()  # git-tracked, sent back
    status = team.ctl.run([DVC, "status"], env=team.ctl_env(), cwd=project)
    assert "changed" not in status.stdout.replace("always changed", ""), status.stdout

    # the champions are registered on the team's MLflow server, from the controller
    models = registry(team, DEFAULT_PREFIX)
    assert set(models) == {f"{DEFAULT_PREFIX}-digits-{t}" for t in ("generation", "restoration")}
    assert all(m["champion"] is not None for m in models.values()), models
    assert [r.data.tags["genpipe.host"] for r in runs["register"]] == ["ctl"]

    # every stage flow run completed on the host the flow reports
    children = {r.name.split(" ")[0]: r for r in stage_flow_runs(team) if run_id[:8] in r.name}
    for stage in ("train_vae", "train_gan", "train_evaluator", "evaluate"):
        assert children[stage].state.is_completed(), children[stage].state
        assert host_of(children[stage]) == hosts[stage]


def test_a_killed_host_and_a_cut_network_lose_their_stages_to_a_spare_worker(team: Team) -> None:
    """worker-b dies (every process killed) and worker-a's cable is pulled while each trains one
    model; the zombie automation marks both stage runs Crashed (no heartbeat within
    orchestration.zombie_after_seconds, well inside the stage timeout) and the parent sends both
    again, to worker-c, a spare that joins after the faults. Only the accepted runs count."""
    proc = team.run_flow(
        "train.seed=7", f"register.model_name_prefix={FAULTS_PREFIX}", log_name="faults"
    )
    gpu_stages = {"train_vae", "train_gan"}
    a, b = team.lab["worker-a"], team.lab["worker-b"]
    deadline = time.monotonic() + 900
    while not (gpu_stages & trainings_on(a) and gpu_stages & trainings_on(b)):
        assert proc.poll() is None, team.flow_result(proc, "faults")[2][-4000:]
        assert time.monotonic() < deadline, logs(team)
        time.sleep(0.5)
    (killed,) = gpu_stages & trainings_on(b)
    (cut,) = gpu_stages - {killed}
    for pid in b.pids():  # the machine dies: every process on it
        os.kill(pid, signal.SIGKILL)
    a.link_down()  # the stage and worker on worker-a keep running, unreachable
    for pool in SPARE_POOLS:
        team.start_worker(SPARE, pool, limit=2)

    code, result, log = team.flow_result(proc, "faults")
    assert code == 0 and result is not None, log[-6000:] + logs(team, [SPARE])
    children = [r for r in stage_flow_runs(team) if result["pipeline_run_id"][:8] in r.name]
    for stage, lost_on in ((killed, "worker-b"), (cut, "worker-a")):
        assert result["stages"][stage]["host"] == SPARE, stage
        attempts = [r for r in children if r.name.split(" ")[0] == stage]
        assert [(host_of(r), r.state.type.value) for r in attempts] == [
            (lost_on, "CRASHED"),
            (SPARE, "COMPLETED"),
        ], stage
        # detected by the missing heartbeats, not by the parent's own deadline for the stage
        assert "no heartbeat" in (attempts[0].state.message or ""), attempts[0].state
        assert f"stage {stage} on host {lost_on}" in log, stage
    # the accepted runs are worker-c's; the registry holds one decision's champions
    runs = mlflow_stage_runs(team, result["pipeline_run_id"])
    for stage in (killed, cut):
        model = (team.project / f"data/models/{stage.removeprefix('train_')}/run.json").read_text()
        accepted = [r for r in runs[stage] if r.info.run_id in model]
        assert [r.data.tags["genpipe.host"] for r in accepted] == [SPARE], stage
    models = registry(team, FAULTS_PREFIX)
    assert len(models) == 2 and all(
        m["versions"] == [1] and m["champion"] == "1" for m in models.values()
    ), models
    status = team.ctl.run([DVC, "status"], env=team.ctl_env(), cwd=team.project)
    assert "changed" not in status.stdout.replace("always changed", ""), status.stdout
