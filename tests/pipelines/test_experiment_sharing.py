"""A sweep member's way back from a worker, with real DVC and git in temporary repos: the
worker's flow `genpipe-sweep-member`, in a worker's layout (a worktree of a mirror), runs the
member as `dvc exp run --temp --pull` (the baseline's output pulled from the DVC remote, not rerun)
and pushes it to the shared git repo and DVC remote; the controller's `experiments.pull` makes
`dvc exp show` there list it with its metrics. A failing member's flow run fails, saying why."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from prefect.states import State

from pipelines import experiments
from pipelines.code_remote import dvc_git_env, git_env
from pipelines.stage_flow import REMOTE_VAR
from pipelines.sweep_member import genpipe_sweep_member

DVC_YAML = """\
stages:
  base:
    cmd: echo base > base.txt
    outs: [base.txt]
  member:
    cmd: python member.py
    deps: [base.txt, member.py]
    params: [x]
    outs: [big.txt]
    metrics: [{m.json: {cache: false}}]
"""
MEMBER_PY = """\
import json, yaml
x = yaml.safe_load(open("params.yaml"))["x"]
assert x <= 5, f"x={x} is too big"
json.dump({"x": x}, open("m.json", "w"))
open("big.txt", "w").write(open("base.txt").read() * x)
"""


def git(cwd: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-c", "user.email=t@t", "-c", "user.name=t", *args],
        cwd=cwd, capture_output=True, text=True, check=True,
    )  # fmt: skip
    return done.stdout.strip()


def dvc(cwd: Path, *args: str) -> None:
    from tests.conftest import venv_bin

    done = subprocess.run([str(venv_bin() / "dvc"), *args], cwd=cwd, capture_output=True, text=True)
    assert done.returncode == 0, f"dvc {args}: {done.stdout}{done.stderr}"


@pytest.mark.slow  # a Prefect flow run, git and DVC remotes, `dvc exp run`: end to end
def test_a_member_run_by_the_worker_flow_comes_back_through_exp_push_and_pull(
    tmp_path: Path, prefect_harness: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    shared, storage = tmp_path / "code.git", tmp_path / "dvc-remote"
    git(tmp_path, "init", "-q", "--bare", str(shared))
    ctl = tmp_path / "ctl"
    ctl.mkdir()
    git(ctl, "init", "-q")
    dvc(ctl, "init", "-q")
    (ctl / "dvc.yaml").write_text(DVC_YAML)
    (ctl / "member.py").write_text(MEMBER_PY)
    (ctl / "params.yaml").write_text("x: 1\n")
    dvc(ctl, "remote", "add", "-d", "team", str(storage))
    dvc(ctl, "repro", "-q")
    dvc(ctl, "push", "-q")
    git(ctl, "add", "-A")
    git(ctl, "commit", "-qm", "baseline")
    git(ctl, "push", "-q", str(shared), "HEAD:refs/heads/main")
    baseline = git(ctl, "rev-parse", "HEAD")

    # the worker's layout (pipelines.stage_flow.commit_checkout makes it): a mirror of the code
    # repo, and the commit's folder, where the flow makes its worktree; no venv (no package here)
    cache = tmp_path / "xdg" / "genpipe" / "worker"
    git(tmp_path, "clone", "-q", "--mirror", str(shared), str(cache / "mirror.git"))
    folder = cache / "commits" / baseline
    folder.mkdir(parents=True)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))  # the worker's DVC cache too
    monkeypatch.setenv("GENPIPE_DVC_REMOTE_URL", str(storage))  # as `make worker` has it
    monkeypatch.setenv(REMOTE_VAR, str(shared))  # a job variable of the flow run
    monkeypatch.setenv("GIT_TERMINAL_PROMPT", "0")  # what the flow sets for its git, undone after
    monkeypatch.delenv("GIT_SSH_COMMAND", raising=False)  # a local remote: no ssh

    def member(name: str, x: int) -> State:
        os.chdir(folder)  # the pull step's directory (each flow run is a process of its own)
        params, lock = (ctl / "params.yaml").read_text(), (ctl / "dvc.lock").read_text()
        return genpipe_sweep_member(name, "member", [f"x={x}"], baseline, params, lock, "run-id",
                                    300.0, return_state=True)  # fmt: skip

    state = member("x-3-abcdef0", 3)
    assert state.is_completed(), state.message
    assert state.result()["outcome"] == "ran"
    log = (folder / "logs" / "x-3-abcdef0.log").read_text()
    assert "Running stage 'member'" in log and "Running stage 'base'" not in log  # base pulled
    assert member("x-3-abcdef0", 3).result()["outcome"] == "held"  # pushed again, not rerun
    failed = member("x-9-abcdef0", 9)
    assert failed.is_failed() and "x=9 is too big" in failed.message, failed.message
    ref = experiments.exp_ref(baseline, "x-3-abcdef0")

    assert not experiments.holds(ctl, ref)
    experiments.pull(ctl, ref, str(shared))
    held = experiments.held_experiments(ctl, baseline)
    assert set(held) == {"x-3-abcdef0"}
    assert held["x-3-abcdef0"].params == {"x": 3}
    assert held["x-3-abcdef0"].metrics["m.json"] == {"x": 3}
    dvc(ctl, "exp", "apply", "x-3-abcdef0")  # its output came into the controller's cache
    assert (ctl / "big.txt").read_text() == "base\n" * 3

    with pytest.raises(Exception, match="x-9"):
        experiments.pull(ctl, experiments.exp_ref(baseline, "x-9-0000000"), str(shared))


def test_dvc_git_env_gives_dulwich_the_ssh_command_with_its_variables_expanded(
    tmp_path: Path,
) -> None:
    """`make -s services-env` exports GIT_SSH_COMMAND naming $GENPIPE_DVC_REMOTE_KEYFILE, which
    git's shell expands; DVC's git (dulwich) reads only core.sshCommand, and runs it without a
    shell."""
    environ = {
        "GIT_SSH_COMMAND": 'ssh -i "$GENPIPE_DVC_REMOTE_KEYFILE" -o X="$GENPIPE_SSH_KNOWN_HOSTS"',
        "GENPIPE_DVC_REMOTE_KEYFILE": "/k/key",
        "GENPIPE_SSH_KNOWN_HOSTS": "/k/hosts",
    }
    expanded = 'ssh -i "/k/key" -o X="/k/hosts"'
    assert git_env(environ)["GIT_SSH_COMMAND"] == expanded
    env = dvc_git_env(environ, tmp_path)
    assert env["GIT_SSH_COMMAND"] == expanded
    from dulwich.config import ConfigFile

    config = ConfigFile.from_path(env["GIT_CONFIG_SYSTEM"])
    assert config.get((b"core",), b"sshCommand").decode() == expanded
    assert dvc_git_env(env, tmp_path) == {**env, "GIT_TERMINAL_PROMPT": "0"}  # set up once
