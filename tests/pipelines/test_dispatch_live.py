"""Dispatch on one host, with the real parts: a `prefect server`, prefect.yaml deployed by
`python -m pipelines.deploy`, a process worker of pool genpipe-gpu, a bare git code remote and a
folder DVC remote; the stages are the fake ones. The flow runs as a user runs it (`python -m
pipelines --dispatch`, in the controller checkout). Faults across hosts: tests/e2e/test_multihost.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from genpipe.config import load_params
from pipelines.worker import worker_env
from tests.conftest import copy_project, venv_bin
from tests.pipelines.conftest import FAKE_STAGES, HERE, prefect_server, stop_group

# one worker runs the module, so its server and worker (the module fixture `team`) start once
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("dispatch-live")]

WORKER = "worker-one"
POOLS = {"train_vae": "genpipe-gpu", "train_gan": "genpipe-gpu", "train_evaluator": "genpipe-gpu"}


@dataclass
class Team:
    root: Path
    api: str
    project: Path  # the controller's checkout
    code: Path  # the bare code remote
    remote: Path  # the DVC remote

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "PREFECT_API_URL": self.api,
            "PREFECT_HOME": str(self.root / "prefect-client"),
            "MLFLOW_TRACKING_URI": f"sqlite:///{self.root / 'mlflow.db'}",
            "PATH": f"{venv_bin()}:{os.environ['PATH']}",
        }

    def git(self, *args: str, cwd: Path | None = None) -> str:
        done = subprocess.run(["git", "-c", "user.email=t@t", "-c", "user.name=t", *args],
                              cwd=cwd or self.project, capture_output=True, text=True)  # fmt: skip
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    def flow(self, *overrides: str, project: Path | None = None) -> tuple[int, dict[str, Any], str]:
        """`python -m pipelines --dispatch -S ...` in a checkout: (exit code, result, output)."""
        argv = [sys.executable, "-m", "pipelines", "--dispatch"]
        for item in overrides:
            argv += ["-S", item]
        done = subprocess.run(argv, cwd=project or self.project, env=self.env(),
                              capture_output=True, text=True, timeout=1800)  # fmt: skip
        out = done.stdout + done.stderr
        line = next((ln for ln in done.stdout.splitlines() if ln.startswith("pipeline run ")), "")
        outcomes = dict(i.split("=") for i in line.partition(": ")[2].split(", ") if "=" in i)
        return done.returncode, outcomes, out

    def stage_runs(self) -> list[Any]:
        from prefect.client.orchestration import get_client
        from prefect.client.schemas.filters import FlowFilter, FlowFilterName
        from prefect.settings import PREFECT_API_URL, temporary_settings

        with temporary_settings({PREFECT_API_URL: self.api}), get_client(sync_client=True) as c:
            return c.read_flow_runs(
                flow_filter=FlowFilter(name=FlowFilterName(any_=["genpipe-stage"]))
            )


def controller(root: Path, code: Path, remote: Path) -> Path:
    """A committed fake-stage project whose trainings go to genpipe-gpu, pushed to `code`."""
    project = copy_project(root / "ctl")
    for name, dest in (("fake_stage.py", "fake_stage.py"), ("fake_dvc.yaml", "dvc.yaml")):
        (project / dest).write_text((HERE / name).read_text())
    (project / "dvc.lock").unlink(missing_ok=True)
    (project / ".gitignore").write_text((project / ".gitignore").read_text() + "/trace/\n")
    params = yaml.safe_load((project / "params.yaml").read_text())
    orchestration = params["orchestration"]
    orchestration["pools"] = {s: POOLS.get(s, "local") for s in FAKE_STAGES}
    orchestration.update(queue_timeout_seconds=900, worker_poll_seconds=1)
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return project


@pytest.fixture(scope="module")
def team(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Team]:
    root = tmp_path_factory.mktemp("dispatch")
    with prefect_server(root / "prefect") as api:
        code, remote = root / "code.git", root / "dvc-remote"
        team = Team(root, api, controller(root, code, remote), code, remote)
        team.git("init", "-q", "--bare", str(code), cwd=root)
        team.git("add", "-A")
        team.git("commit", "-qm", "fake stages")
        team.git("remote", "add", "team", str(code))
        team.git("push", "-q", "team", "HEAD:refs/heads/main")
        subprocess.run([venv_bin() / "dvc", "remote", "add", "--local", "-d", "team", str(remote)],
                       cwd=team.project, check=True)  # fmt: skip
        done = subprocess.run([sys.executable, "-m", "pipelines.deploy"], cwd=team.project,
                              env=team.env(), capture_output=True, text=True)  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        config = load_params(team.project / "params.yaml").orchestration
        env = worker_env({**team.env(), "GENPIPE_DVC_REMOTE_URL": str(remote)}, config, 2)
        env["XDG_CACHE_HOME"] = str(root / "worker-cache")
        worker = subprocess.Popen(
            [venv_bin() / "prefect", "worker", "start", "--pool", "genpipe-gpu", "--name",
             WORKER, "--type", "process", "--limit", "2"],
            cwd=root, env=env, stdout=(root / "worker.log").open("w"),
            stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        try:
            yield team
        finally:
            stop_group(worker)


def test_trainings_run_on_the_worker_and_come_back_through_the_dvc_remote(team: Team) -> None:
    code, outcomes, out = team.flow()
    assert code == 0, out[-5000:] + (team.root / "worker.log").read_text()[-5000:]
    assert outcomes == {
        **{s: "ran" for s in ("download", "prepare", "validate", "evaluate", "decide")},
        **{s: f"ran@{WORKER}" for s in POOLS},
        "register": "ran",
    }
    trace = team.project / "trace"
    assert not any((trace / f"{s}.jsonl").exists() for s in POOLS)  # the controller ran none
    assert (team.project / "data/models/vae/model.txt").is_file()  # restored from the remote
    status = subprocess.run([venv_bin() / "dvc", "status"], cwd=team.project,
                            capture_output=True, text=True).stdout  # fmt: skip
    assert "changed" not in status.replace("always changed", ""), status
    worked = list(
        (team.root / "worker-cache").glob("genpipe/worker/commits/*/ws*/trace/train_vae.jsonl")
    )
    assert len(worked) == 1 and json.loads(worked[0].read_text().splitlines()[-1])["end"]

    # nothing changed: no stage is sent anywhere
    sent = len(team.stage_runs())
    code, outcomes, out = team.flow()
    assert code == 0, out[-5000:]
    assert outcomes == {**{s: "skipped" for s in outcomes}, "register": "ran"}
    assert len(team.stage_runs()) == sent

    # a second checkout of the same commit: its trainings come from the team's run-cache
    other = team.root / "teammate"
    team.git("clone", "-q", "-b", "main", str(team.code), str(other), cwd=team.root)
    subprocess.run([venv_bin() / "dvc", "remote", "add", "--local", "-d", "team",
                    str(team.remote)], cwd=other, check=True)  # fmt: skip
    team.git("remote", "rename", "origin", "team", cwd=other)
    code, outcomes, out = team.flow(project=other)
    assert code == 0, out[-5000:]
    assert {s: outcomes[s] for s in POOLS} == dict.fromkeys(POOLS, "restored")
    assert len(team.stage_runs()) == sent
    assert (other / "data/models/gan/model.txt").read_text() == (
        team.project / "data/models/gan/model.txt"
    ).read_text()


def test_a_stage_past_its_budget_is_cancelled_and_its_command_stopped(team: Team) -> None:
    """The budget automation (orchestration.timeouts) cancels the run; the worker's run stops the
    stage command with it."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from genpipe.config import load_params
    from genpipe.overrides import apply_overrides
    from pipelines.deploy import install_automations

    (team.project / "train_gan_hangs").touch()
    team.git("add", "train_gan_hangs")
    team.git("commit", "-qm", "train_gan hangs")
    team.git("push", "-q", "team", "HEAD:refs/heads/main")
    params = team.project / "params.yaml"
    apply_overrides(params, ["++orchestration.timeouts.train_gan=60", "gan.epochs=3"])
    with temporary_settings({PREFECT_API_URL: team.api}):
        install_automations(load_params(params).orchestration)  # what `make deploy-stages` does

    code, _, out = team.flow()

    assert code == 2
    assert "stage train_gan on host" in out and "was cancelled" in out, out[-3000:]
    assert "orchestration.timeouts" in out
    traces = team.root.glob("worker-cache/genpipe/worker/commits/*/ws*/trace/train_gan.jsonl")
    started = [json.loads(ln) for path in traces for ln in path.read_text().splitlines()]
    hung = [r["pid"] for r in started if "end" not in r]
    assert hung, "the hanging stage never started"
    assert not any(_alive(pid) for pid in hung), "the cancelled stage's command still runs"


def _alive(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
