"""Dispatch without Prefect or a network: the code check against real git remotes, the params
delta, and the data path (a worker clone runs a stage, the controller accepts it) with real DVC,
a local-folder DVC remote and the fake stages. The Prefect side runs in tests/e2e/test_multihost.py.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from genpipe.config import ConfigError, Params
from pipelines import dvc_sync
from pipelines.code_remote import CodeError, check_code, push_head
from pipelines.dispatch import WorkerLost, params_delta, retry_on_lost_worker, written_by_runs
from pipelines.dvc_plan import StagePlan, _pythonpath
from pipelines.dvc_runner import StageFailed
from pipelines.params_overrides import apply_overrides
from pipelines.stage_worker import StageRequest, WorkerSetupError, params_sha256, run
from tests.conftest import venv_bin
from tests.params import merge, raw_params
from tests.pipelines.conftest import trace


def git(cwd: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-c", "user.email=t@t", "-c", "user.name=t", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


# --- params ----------------------------------------------------------------------------------


def test_params_delta_reproduces_the_controllers_params(tmp_path: Path) -> None:
    base = raw_params()
    target = merge(
        copy.deepcopy(base), {"vae": {"epochs": 7, "lr": 0.002 * 2}, "gan": {"betas": [0.5, 0.9]}}
    )
    target["orchestration"]["pools"] = {**target["orchestration"]["pools"], "train_vae": "local"}
    target["data"]["seed"] = 0.0  # equal in Python, not in DVC's params hash
    delta = params_delta(base, target)
    assert "data.seed=0.0" in delta and "vae.epochs=7" in delta
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(base, sort_keys=False))
    apply_overrides(path, delta)
    assert params_sha256(yaml.safe_load(path.read_text())) == params_sha256(target)
    assert params_delta(base, base) == []


def test_orchestration_config_names_bad_keys() -> None:
    raw = raw_params()
    with pytest.raises(ConfigError, match=r"orchestration.zombie_after_seconds"):
        Params.from_dict(merge(raw, {"orchestration": {"zombie_after_seconds": 45}}))
    with pytest.raises(ConfigError, match=r"orchestration.pools.train_vae"):
        Params.from_dict(merge(raw, {"orchestration": {"pools": {"train_vae": "GPU pool"}}}))
    config = Params.from_dict(raw).orchestration
    with pytest.raises(KeyError, match=r"orchestration.pools has no entry for stage 'extra'"):
        config.pool_of("extra")
    assert config.remote_pools() == ["genpipe-cpu", "genpipe-gpu"]


def test_only_a_lost_worker_is_retried() -> None:
    def state(exc: BaseException) -> SimpleNamespace:
        def result() -> None:
            raise exc

        return SimpleNamespace(result=result)

    assert retry_on_lost_worker(None, None, state(WorkerLost("s", "crashed")))
    assert not retry_on_lost_worker(None, None, state(StageFailed("s", "exit 1")))
    assert not retry_on_lost_worker(None, None, SimpleNamespace(result=lambda: 1))


# --- the code workers clone ------------------------------------------------------------------


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A checkout on a branch with a bare remote `team` that has its first commit."""
    bare, work = tmp_path / "code.git", tmp_path / "work"
    git(tmp_path, "init", "-q", "--bare", str(bare))
    git(tmp_path, "init", "-q", "-b", "main", str(work))
    (work / "a.py").write_text("A = 1\n")
    (work / "params.yaml").write_text("x: 1\n")
    git(work, "add", "-A")
    git(work, "commit", "-qm", "one")
    git(work, "remote", "add", "team", str(bare))
    return work


def test_the_commit_must_be_clean_and_on_the_remote(checkout: Path) -> None:
    allowed = {"params.yaml", "dvc.lock", "data/metrics.json", "data/plots/a.csv", "data/eval"}
    with pytest.raises(CodeError, match=r"is not on git remote 'team'.*make push-code"):
        check_code(checkout, "team", allowed)
    first = push_head(checkout, "team")
    assert check_code(checkout, "team", allowed).commit == first

    (checkout / "params.yaml").write_text("x: 2\n")  # the flow's overrides: allowed
    (checkout / "dvc.lock").write_text("schema: '2.0'\n")
    for rel in ("data/plots/a.csv", "data/eval/report.csv"):  # new folders of allowed outputs
        (checkout / rel).parent.mkdir(parents=True, exist_ok=True)
        (checkout / rel).write_text("x\n")
    assert check_code(checkout, "team", allowed).commit == first
    (checkout / "data/plots/b.csv").write_text("x\n")  # not an output: named, not its folder
    with pytest.raises(CodeError, match=r"uncommitted changes \(data/plots/b.csv\)"):
        check_code(checkout, "team", allowed)
    (checkout / "data/plots/b.csv").unlink()
    (checkout / "a.py").write_text("A = 2\n")
    (checkout / "new.py").write_text("")
    with pytest.raises(CodeError, match=r"uncommitted changes \(a.py, new.py\)"):
        check_code(checkout, "team", allowed)

    git(checkout, "add", "a.py", "new.py")
    git(checkout, "commit", "-qm", "two")
    with pytest.raises(CodeError, match="not on git remote"):
        check_code(checkout, "team", allowed)
    second = push_head(checkout, "team")
    git(checkout, "checkout", "-q", "--detach", first)  # an ancestor of the remote's tip
    assert check_code(checkout, "team", allowed).commit == first != second


def test_a_missing_remote_or_repo_is_named(checkout: Path, tmp_path: Path) -> None:
    with pytest.raises(CodeError, match=r"no git remote 'origin'.*make services-git-remote"):
        check_code(checkout, "origin", set())
    plain = tmp_path / "plain"
    plain.mkdir()
    with pytest.raises(CodeError, match="is not a git checkout"):
        check_code(plain, "team", set())


# --- the data path ---------------------------------------------------------------------------


def dvc(project: Path, *args: str) -> str:
    env = {**os.environ, "PATH": f"{venv_bin()}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(
        [str(venv_bin() / "dvc"), *args], cwd=project, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.fixture
def controller(fake_project: Path, tmp_path: Path) -> Path:
    """The fake-stage project, committed, with a local-folder DVC remote; data stages done."""
    git(fake_project, "add", "-A")
    git(fake_project, "commit", "-qm", "fake stages")
    dvc(fake_project, "remote", "add", "--local", "-d", "team", str(tmp_path / "remote"))
    dvc(fake_project, "repro", "prepare")
    return fake_project


def worker_clone(controller: Path, tmp_path: Path, name: str) -> Path:
    clone = tmp_path / name
    git(tmp_path, "clone", "-q", str(controller), str(clone))
    return clone


def helper_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": _pythonpath()}


def request_for(controller: Path, stage: str, pull: list[str], uncached: list[str], **kw):
    lock = dvc_sync.call(controller, "snapshot", ["download", "prepare"], helper_env(), 300)
    params = yaml.safe_load((controller / "params.yaml").read_text())
    fields = {
        "stage": stage,
        "commit": git(controller, "rev-parse", "HEAD"),
        "overrides": [],
        "params_sha256": params_sha256(params),
        "lock": lock["lock"],
        "pull": pull,
        "uncached": uncached,
        "pipeline_run_id": "run-1",
        "timeout_seconds": 300.0,
    }
    return StageRequest(**{**fields, **kw})


def test_a_worker_runs_a_stage_and_the_controller_takes_its_result(
    controller: Path, tmp_path: Path
) -> None:
    clone = worker_clone(controller, tmp_path, "worker")
    environ = {**os.environ, "GENPIPE_DVC_REMOTE_URL": str(tmp_path / "remote")}
    request = request_for(
        controller, "validate", ["data/prepared"], ["data/validation/summary.json"]
    )
    result = run(clone, request, environ)
    assert result["outcome"] == "ran" and result["fetched"] > 0
    assert json.loads(result["files"]["data/validation/summary.json"]) == {"success": True}
    assert [r["run_id"] for r in trace(clone, "validate")] == ["run-1", "run-1"]  # start, end

    dvc_sync.call(controller, "accept", ["validate"], helper_env(), 300, request=result)
    assert trace(controller, "validate") == []  # the controller never ran it
    assert (controller / "data/validation/docs/index.html").is_file()  # from the remote
    assert "validate" not in dvc(controller, "status", "validate")  # up to date here

    # a second worker finds the stage in the team's run-cache and restores it
    again = run(worker_clone(controller, tmp_path, "worker2"), request, environ)
    assert again["outcome"] == "restored" and again["entry"] == result["entry"]


def test_a_result_from_other_inputs_is_refused(controller: Path, tmp_path: Path) -> None:
    clone = worker_clone(controller, tmp_path, "worker")
    environ = {**os.environ, "GENPIPE_DVC_REMOTE_URL": str(tmp_path / "remote")}
    request = request_for(controller, "validate", ["data/prepared"], [])
    wrong = dict(request.__dict__, overrides=["validate.min_rows.val=3"])
    with pytest.raises(WorkerSetupError, match="differs from the controller's"):
        run(clone, StageRequest(**wrong), environ)
    # a worker that ran other params (here: params.yaml edited behind the flow's back)
    params = yaml.safe_load((clone / "params.yaml").read_text())
    other = merge(params, {"validate": {"min_rows": {"val": 3}}})
    cheat = dict(request.__dict__, params_sha256=params_sha256(other))
    (clone / "params.yaml").write_text(yaml.safe_dump(other))
    git(clone, "commit", "-qam", "other params")
    cheat["commit"] = git(clone, "rev-parse", "HEAD")
    result = run(clone, StageRequest(**cheat), environ)
    with pytest.raises(dvc_sync.SyncError, match="does not match the controller's inputs"):
        dvc_sync.call(controller, "accept", ["validate"], helper_env(), 300, request=result)
    assert trace(controller, "validate") == []


def test_a_worker_refuses_another_commit(controller: Path, tmp_path: Path) -> None:
    clone = worker_clone(controller, tmp_path, "worker")
    request = request_for(controller, "validate", [], [], commit="0" * 40)
    with pytest.raises(WorkerSetupError, match="not 0000000000"):
        run(clone, request, {**os.environ, "GENPIPE_DVC_REMOTE_URL": "/nowhere"})
    assert sys.executable  # the check runs before any DVC process


def test_a_runs_outputs_do_not_make_the_checkout_dirty() -> None:
    """After a run the controller holds every stage's outputs, cached ones too (a loss-curve
    table next to git-tracked plots): none of them, nor DVC's .gitignore beside them, is code."""
    plan = StagePlan(
        stages=("train", "evaluate"),
        upstream={"train": (), "evaluate": ("train",)},
        files={
            "train": {"outs": ["data/models/m", "data/plots/train.csv"], "metrics": []},
            "evaluate": {"outs": ["data/plots/gen.csv"], "metrics": ["data/metrics.json"]},
        },
    )
    assert written_by_runs(plan) == {
        "dvc.lock",
        "params.yaml",
        "data/models/m",
        "data/plots/train.csv",
        "data/plots/gen.csv",
        "data/metrics.json",
        "data/models/.gitignore",
        "data/plots/.gitignore",
        "data/.gitignore",
    }
