"""A sweep member's way back from a worker, with real DVC and git in temporary repos: a
worktree of a mirror (a worker's checkout) runs the member as `dvc exp run --temp --pull` (the
baseline's output pulled from the DVC remote, not rerun), `experiments.push` sends it to the
shared git repo and DVC remote, and the controller's `experiments.pull` makes `dvc exp show`
there list it with its metrics."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from genpipe.sweeps.plan import Member
from pipelines import experiments
from pipelines.code_remote import git_env

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


def test_a_member_run_on_a_clone_comes_back_through_exp_push_and_pull(tmp_path: Path) -> None:
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

    # the worker's layout (pipelines.stage_flow.commit_checkout): a worktree of a mirror
    mirror, worker = tmp_path / "mirror.git", tmp_path / "ws0"
    git(tmp_path, "clone", "-q", "--mirror", str(shared), str(mirror))
    git(
        tmp_path,
        "--git-dir",
        str(mirror),
        "worktree",
        "add",
        "-q",
        "--detach",
        str(worker),
        baseline,
    )
    dvc(worker, "config", "--local", "cache.dir", str(tmp_path / "worker-cache"))
    member = Member("x-3-abcdef0", ("x=3",), "member")
    run = experiments.run_member(worker, member, {}, tmp_path / "member.log", 300, pull=True)
    assert run.ok, run.log_path.read_text()
    assert "Running stage 'base'" not in run.log_path.read_text()  # pulled, not rerun
    ref = experiments.exp_ref(baseline, member.name)
    assert experiments.holds(worker, ref)
    experiments.push(worker, ref, str(shared))

    assert not experiments.holds(ctl, ref)
    experiments.pull(ctl, ref, str(shared))
    held = experiments.held_experiments(ctl, baseline)
    assert held[member.name].params == {"x": 3}
    assert held[member.name].metrics["m.json"] == {"x": 3}
    dvc(ctl, "exp", "apply", member.name)  # its output came into the controller's cache
    assert (ctl / "big.txt").read_text() == "base\n" * 3

    with pytest.raises(Exception, match="x-9"):
        experiments.pull(ctl, experiments.exp_ref(baseline, "x-9-0000000"), str(shared))


def test_git_env_expands_the_variables_of_a_set_ssh_command() -> None:
    """`make -s services-env` exports GIT_SSH_COMMAND naming $GENPIPE_DVC_REMOTE_KEYFILE, which
    git's shell expands but DVC's git (dulwich) does not."""
    environ = {
        "GIT_SSH_COMMAND": 'ssh -i "$GENPIPE_DVC_REMOTE_KEYFILE" -o X="$GENPIPE_SSH_KNOWN_HOSTS"',
        "GENPIPE_DVC_REMOTE_KEYFILE": "/k/key",
        "GENPIPE_SSH_KNOWN_HOSTS": "/k/hosts",
    }
    assert git_env(environ)["GIT_SSH_COMMAND"] == 'ssh -i "/k/key" -o X="/k/hosts"'
