"""A sweep dispatched to two worker hosts (tests/e2e/multihost.py): the controller shares a
baseline, then `python -m pipelines.sweep --dispatch` sends two members (a seed and one whose
image folder is missing) to the pool orchestration.sweep_pool names. Each runs whole on
a worker and comes back with `dvc exp pull`; `dvc exp show` on the controller lists the good
one, the sweep reports the failed one, and MLflow nests every member under the sweep."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.multihost import (
    PYTHON,
    Team,
    bring_up,
    ctl_command,
    host_of,
    logs,
    share_baseline,
    start_team,
)
from tests.netns import NetnsLab, netns_available

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("multihost")]

WORKERS = ("worker-a", "worker-b")
POOL = "genpipe-gpu"
BIN = Path(sys.executable).parent
# a seed and a member that fails on its worker (the seed spread of several: tests/e2e/test_sweep.py)
SWEEP = "train.seed=1; data.dataset=folder data.folder=no-such-folder"
FAILING = "dataset-folder_folder-no-such-folder"


@pytest.fixture(scope="module")
def team(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Team]:
    if (why := netns_available()) is not None:
        pytest.skip(why)
    with NetnsLab(["ctl", *WORKERS]) as lab:  # its exit kills every host's processes
        params = {"orchestration": {"sweep_pool": POOL}}
        team = start_team(lab, tmp_path_factory.mktemp("multihost-sweep"), params)
        try:
            bring_up(team)
            for host in WORKERS:
                team.start_worker(host, POOL)
            team.wait_workers()
            yield team
        finally:
            team.close()


def test_a_dispatched_sweep_of_two_with_one_failing(team: Team) -> None:
    share_baseline(team)

    argv = [PYTHON, "-m", "pipelines.sweep", SWEEP, "--jobs", "2", "--dispatch", "-n", "e2e"]
    done = team.ctl.run(argv, env=team.ctl_env(), cwd=team.project, timeout=2400, check=False)
    out = done.stdout + done.stderr
    assert done.returncode == 1, out[-6000:] + logs(team, ["worker"])  # one member failed
    assert "2 members, 1 failed" in out, out[-6000:] + logs(team, ["worker"])
    failed_part = out.split("Failed members")[1]
    assert FAILING in failed_part, failed_part

    # the controller holds the good member, pulled from the code remote
    shown = json.loads(ctl_command(team, str(BIN / "dvc"), "exp", "show", "--json"))
    names = {e["name"] for b in shown for e in b.get("experiments") or [] if e.get("name")}
    seeds = {n for n in names if n.startswith("seed-")}
    assert len(seeds) == 1 and not any(n.startswith(FAILING) for n in names), names

    # each member ran on a worker host; the failed one's log names its host and the missing folder
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName

    with team.prefect() as client:
        runs = client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=["genpipe-sweep-member"]))
        )
    hosts = {r.name.split(" ")[0]: host_of(r) for r in runs}
    print(f"members by host: {hosts}")
    assert set(hosts) == seeds | {n for n in hosts if n.startswith(FAILING)} and len(hosts) == 2
    assert set(hosts.values()) <= set(WORKERS), hosts
    [log] = team.project.glob(f".genpipe/sweeps/e2e-*/logs/{FAILING}*.log")
    said = log.read_text()
    assert "on host worker-" in said and "no-such-folder" in said, said

    # MLflow on the team's server: one parent, a child per member, their stage runs nested
    with team.mlflow() as client:
        experiment = client.get_experiment_by_name("genpipe-digits").experiment_id
        [parent] = client.search_runs([experiment], "tags.`genpipe.stage` = 'sweep'")
        query = f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'"
        children = {
            c.data.tags["genpipe.sweep_member"]: c for c in client.search_runs([experiment], query)
        }
        assert set(children) >= seeds and len(children) == 2, children
        for name in seeds:
            child = children[name]
            assert child.info.status == "FINISHED", name
            assert "generation.fd.vae" in child.data.metrics, name
            nested = client.search_runs(
                [experiment], f"tags.`mlflow.parentRunId` = '{child.info.run_id}'"
            )
            assert {r.data.tags["genpipe.stage"] for r in nested} >= {"train_vae", "evaluate"}
            assert {r.data.tags["genpipe.host"] for r in nested} == {hosts[name]}, name
        [failed] = [c for n, c in children.items() if n not in seeds]
        assert failed.info.status == "FAILED"
