"""Dispatch pieces with real git: the code check against a real bare remote, and what a run may
leave uncommitted; the wait on a dispatched run, against a real Prefect API. The live dispatch
runs in test_dispatch_live.py and, across hosts, in tests/e2e/test_multihost.py.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from pipelines.code_remote import CodeError, check_code, push_head
from pipelines.dispatch import wait_for_end, written_by_runs
from pipelines.plan import StagePlan


def git(cwd: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-c", "user.email=t@t", "-c", "user.name=t", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


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
    assert check_code(checkout, "team", allowed)[0] == first

    (checkout / "params.yaml").write_text("x: 2\n")  # the flow's overrides: allowed
    (checkout / "dvc.lock").write_text("schema: '2.0'\n")
    for rel in ("data/plots/a.csv", "data/eval/report.csv"):  # new folders of allowed outputs
        (checkout / rel).parent.mkdir(parents=True, exist_ok=True)
        (checkout / rel).write_text("x\n")
    assert check_code(checkout, "team", allowed)[0] == first
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
    assert check_code(checkout, "team", allowed)[0] == first != second


def test_a_missing_remote_or_repo_is_named(checkout: Path, tmp_path: Path) -> None:
    with pytest.raises(CodeError, match=r"no git remote 'origin'.*make services-git-remote"):
        check_code(checkout, "origin", set())
    plain = tmp_path / "plain"
    plain.mkdir()
    with pytest.raises(CodeError, match="is not a git checkout"):
        check_code(plain, "team", set())


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


# --- waiting on a dispatched run -------------------------------------------------------------


def test_a_wait_whose_event_stream_closes_early_waits_again(
    prefect_harness: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Prefect's wait_for_flow_run returns as a timeout when the server closes its event stream
    cleanly: the run, still Running, is waited on again rather than reported as past the
    automations' deadlines."""
    import prefect.flow_runs
    from prefect import flow, get_client
    from prefect.exceptions import FlowRunWaitTimeout
    from prefect.states import Completed, Running

    @flow(name="genpipe-wait-test")
    def nothing() -> None:
        pass

    with get_client(sync_client=True) as client:
        run = client.create_flow_run(nothing, state=Running())
    real, calls = prefect.flow_runs.wait_for_flow_run, []

    async def closed_then_ends(flow_run_id: object, timeout: int) -> object:
        calls.append(timeout)
        if len(calls) == 1:  # what Prefect's wait raises when its stream is closed cleanly
            raise FlowRunWaitTimeout(f"Flow run with ID {flow_run_id} exceeded watch timeout")
        async with get_client() as client:  # the worker's run ends
            await client.set_flow_run_state(run.id, Completed(), force=True)
        return await real(flow_run_id, timeout=timeout)

    monkeypatch.setattr(prefect.flow_runs, "wait_for_flow_run", closed_then_ends)
    ended = wait_for_end(run.id, 600)
    assert ended.state.is_completed(), ended.state
    assert len(calls) == 2 and calls[1] <= 600
