"""The plan's pure rules: graph order, levels, who may run, who shares the cores, who skips."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipelines.plan import PlanError, StagePlan, make_plan

# the real pipeline's shape
UPSTREAM = {
    "download": (),
    "prepare": ("download",),
    "validate": ("prepare",),
    "train_vae": ("prepare", "validate"),
    "train_gan": ("prepare", "validate"),
    "train_evaluator": ("prepare", "validate"),
    "evaluate": ("prepare", "train_vae", "train_gan", "train_evaluator"),
    "register": ("evaluate", "train_vae", "train_gan"),
}


def plan(stale: tuple[str, ...] = (), order: list[str] | None = None) -> StagePlan:
    stages = tuple(order or UPSTREAM)
    return StagePlan(stages, UPSTREAM, {s: ["changed deps"] for s in stale})


def test_order_puts_upstream_first_whatever_the_file_order() -> None:
    shuffled = ["register", "train_gan", "evaluate", "download", "validate", "prepare"]
    shuffled += ["train_evaluator", "train_vae"]
    order = plan(order=shuffled).order()
    for stage, ups in UPSTREAM.items():
        assert all(order.index(u) < order.index(stage) for u in ups), stage
    assert order[3:6] == ["train_gan", "train_evaluator", "train_vae"]  # ties: file order


def test_levels_group_the_three_trainings() -> None:
    levels = plan().levels()
    assert levels["download"] == 0 and levels["validate"] == 2
    assert {levels[s] for s in ("train_vae", "train_gan", "train_evaluator")} == {3}
    assert levels["evaluate"] == 4 and levels["register"] == 5


def test_nothing_stale_means_nothing_may_run() -> None:
    p = plan()
    assert p.may_run() == set() and p.sharing() == {}
    assert all(p.skip_without_dvc(s, upstream_ran=False) for s in UPSTREAM)


def test_a_stale_stage_and_its_downstream_may_run_and_split_the_cores() -> None:
    p = plan(stale=("train_gan",))
    assert p.may_run() == {"train_gan", "evaluate", "register"}
    assert p.sharing() == {"train_gan": 1, "evaluate": 1, "register": 1}  # alone on its level
    everything = plan(stale=("prepare",))
    assert everything.sharing()["train_vae"] == 3


def test_up_to_date_is_skipped_only_while_nothing_upstream_ran() -> None:
    p = plan(stale=("download",))
    assert not p.skip_without_dvc("download", upstream_ran=False)  # stale: DVC runs it
    assert p.skip_without_dvc("prepare", upstream_ran=False)  # download was skipped by DVC
    assert not p.skip_without_dvc("prepare", upstream_ran=True)  # download changed: DVC decides


def test_a_cycle_is_an_error() -> None:
    with pytest.raises(PlanError, match="cycle"):
        StagePlan(("a", "b"), {"a": ("b",), "b": ("a",)}).order()


@pytest.mark.slow
def test_the_plan_comes_from_dvc_status_and_overrides_are_validated_first(
    fake_project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DVC's API in this process: its status before and after a repro and an override."""
    import os
    import subprocess
    import sys

    from tests.conftest import venv_bin
    from tests.pipelines.conftest import FAKE_STAGES

    monkeypatch.chdir(fake_project)  # DVC's API, as its CLI, works from the project folder
    fresh, config = make_plan(fake_project, [], None)
    assert set(fresh.stale) == set(FAKE_STAGES)  # never reproduced: everything is stale
    assert fresh.order() == FAKE_STAGES
    assert fresh.files["decide"]["metrics"] == ["data/metrics.json"]
    assert config.gate == "validate"

    env = {**os.environ, "PATH": f"{venv_bin()}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(
        [sys.executable, "-m", "dvc", "repro"], cwd=fake_project, env=env, capture_output=True
    )
    assert done.returncode == 0, done.stderr
    assert set(make_plan(fake_project, [], None)[0].stale) == {"register"}  # always_changed

    changed, _ = make_plan(fake_project, ["vae.epochs=3"], None)
    assert changed.applied == ("vae.epochs=3",)
    assert set(changed.stale) == {"train_vae", "register"}

    before = (fake_project / "params.yaml").read_text()
    with pytest.raises(Exception, match=r"vae\.epochs: Input should be greater than 0"):
        make_plan(fake_project, ["vae.epochs=-1"], None)
    assert (fake_project / "params.yaml").read_text() == before
