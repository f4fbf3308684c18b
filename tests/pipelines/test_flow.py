"""The flow's wiring, run under prefect_test_harness against real DVC on a fake-stage project."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from genpipe import cpu
from pipelines.genpipe_flow import genpipe_pipeline, main
from tests.pipelines.conftest import FAKE_STAGES, trace

STAGES = FAKE_STAGES

# one worker runs the module: the temporary Prefect API starts once, not once per worker
pytestmark = [pytest.mark.usefixtures("prefect_harness"), pytest.mark.xdist_group("prefect-flow")]


def _artifacts(flow_run_id: str) -> dict[str, object]:
    """The flow run's artifacts, by key. Filtered on the artifact's own flow_run_id: a filter on
    task runs would join them, and Prefect records task runs from events, a moment later."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
    from prefect.client.schemas.sorting import ArtifactSort

    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])),
            sort=ArtifactSort.CREATED_DESC,
            limit=50,
            offset=0,
        )
    return {a.key: a.data for a in found}


def test_run_then_noop_then_override_then_revert(fake_project: Path) -> None:
    """One project through four runs; each step checks what the previous one left behind."""
    (fake_project / "download_failures").write_text("1")  # the first download attempt fails

    # 1. a full run; the download's retry policy comes from params.yaml, shortened here
    state = genpipe_pipeline(
        project_dir=str(fake_project),
        overrides={"orchestration.retry_delay_seconds": 0.1},
        return_state=True,
    )

    assert state.is_completed(), state.message
    result = state.result()
    run_id = str(state.state_details.flow_run_id)
    assert result["pipeline_run_id"] == run_id
    assert result["overrides"] == ["orchestration.retry_delay_seconds=0.1"]
    assert _outcomes(result) == dict.fromkeys(STAGES, "ran")
    assert {v["state"] for v in result["stages"].values()} == {"Completed"}
    assert len(trace(fake_project, "download")) == 3  # failed start, retried start, end
    for stage in STAGES:
        assert {r["run_id"] for r in trace(fake_project, stage)} == {run_id}, stage
    # the three trainings may run at once: each is told it shares the cores with two others
    outer = os.environ.get(cpu.SHARE_ENV)  # the test run's own share (pytest-xdist workers)
    for stage in STAGES:
        expected = str(3 * int(outer or 1)) if stage.startswith("train_") else outer
        assert trace(fake_project, stage)[-1]["cpu_share"] == expected, stage

    artifacts = _artifacts(run_id)
    summary = artifacts["genpipe-summary"]
    assert "| decide | generation.fd.gan | 0.75 |" in summary
    assert "**gan** promoted to champion" in summary
    assert f"| train_vae | vae-{run_id} | genpipe-digits |" in summary
    table = artifacts["genpipe-metrics"]
    assert '"generation.fd.vae"' in table and '"evaluator_accuracy"' in table

    # 2. nothing changed: every stage ends "Skipped" without asking DVC again, except the
    # registry check, which is always_changed and runs every time
    state = genpipe_pipeline(project_dir=str(fake_project), return_state=True)
    again = state.result()
    assert _outcomes(again) == {**dict.fromkeys(STAGES, "skipped"), "register": "ran"}
    assert {s for s, v in again["stages"].items() if v["dvc_started"]} == {"register"}
    assert len(trace(fake_project, "decide")) == 2  # the fake stage did not run again
    assert {v["state"] for s, v in again["stages"].items() if s != "register"} == {"Skipped"}
    summary = _artifacts(str(state.state_details.flow_run_id))["genpipe-summary"]
    assert "| decide | skipped (up to date before the run; DVC not asked again) |" in summary

    # 3. an override lands in params.yaml, and DVC reruns only the stages reading that key
    epochs = yaml.safe_load((fake_project / "params.yaml").read_text())["vae"]["epochs"]
    third = genpipe_pipeline(project_dir=str(fake_project), overrides=["vae.epochs=2"])
    ran = {s for s, o in _outcomes(third).items() if o == "ran"}
    assert ran == {"train_vae", "evaluate", "register"}  # the fake evaluate's output is constant
    assert yaml.safe_load((fake_project / "params.yaml").read_text())["vae"]["epochs"] == 2

    # 4. reverted: DVC restores train_vae from its run-cache (Prefect state "Cached")
    trained = len(trace(fake_project, "train_vae"))
    fourth = genpipe_pipeline(project_dir=str(fake_project), overrides=[f"vae.epochs={epochs}"])
    assert fourth["stages"]["train_vae"]["outcome"] == "restored"
    assert fourth["stages"]["train_vae"]["state"] == "Cached"
    assert len(trace(fake_project, "train_vae")) == trained  # not run again
    assert (fake_project / "data/models/vae/model.txt").read_text() == (
        f"weights after {epochs} epochs"
    )


def _outcomes(result: dict) -> dict[str, str]:
    return {stage: v["outcome"] for stage, v in result["stages"].items()}


def test_upstream_rerun_decides_downstream_at_run_time(fake_project: Path) -> None:
    """Up to date when planned is not enough once an upstream stage has rerun: DVC decides."""
    genpipe_pipeline(project_dir=str(fake_project))

    # data.seed changes prepare's output: everything after it is stale only at run time
    seed = genpipe_pipeline(project_dir=str(fake_project), overrides=["data.seed=7"])
    # (the fake evaluate writes a constant report, so decide's input is unchanged)
    rerun = {**dict.fromkeys(STAGES[1:], "ran"), "decide": "skipped"}
    assert _outcomes(seed) == {"download": "skipped", **rerun}
    assert seed["stages"]["download"]["dvc_started"] is False

    # data.max_images reruns the fake download, which writes the same file: DVC skips the rest
    same = genpipe_pipeline(project_dir=str(fake_project), overrides=["data.max_images=400"])
    skipped = {**dict.fromkeys(STAGES[1:], "skipped"), "register": "ran"}
    assert _outcomes(same) == {"download": "ran", **skipped}
    assert {v["state"] for s, v in same["stages"].items() if s not in ("download", "register")} == {
        "Skipped"
    }
    checked = {s for s, v in same["stages"].items() if v["dvc_started"]}
    assert checked == {"download", "prepare", "register"}  # prepare's inputs came out the same


def test_stages_come_from_dvc_yaml_and_always_changed_always_runs(fake_project: Path) -> None:
    """A stage added to dvc.yaml runs with no change to the flow; always_changed never skips."""
    dvc_yaml = yaml.safe_load((fake_project / "dvc.yaml").read_text())
    dvc_yaml["stages"]["report"] = {
        "cmd": "python fake_stage.py report",
        "deps": ["data/eval"],
        "outs": ["data/report.txt"],
        "always_changed": True,
    }
    (fake_project / "dvc.yaml").write_text(yaml.safe_dump(dvc_yaml, sort_keys=False))
    (fake_project / "fake_stage.py").write_text(
        (fake_project / "fake_stage.py")
        .read_text()
        .replace(
            '    record["end"] = time.time()',
            '    if stage == "report":\n        write("data/report.txt", "ok")\n'
            '    record["end"] = time.time()',
        )
    )

    first = genpipe_pipeline(project_dir=str(fake_project))
    assert list(first["stages"]) == [*STAGES, "report"]
    again = genpipe_pipeline(project_dir=str(fake_project))
    assert _outcomes(again) == {
        **dict.fromkeys(STAGES, "skipped"),
        "register": "ran",
        "report": "ran",
    }
    assert len(trace(fake_project, "report")) == 4  # two runs, a start and an end record each


def test_failed_validation_fails_flow_and_nothing_later_runs(fake_project: Path) -> None:
    state = genpipe_pipeline(
        project_dir=str(fake_project),
        overrides=["validate.min_rows.train=100000"],
        return_state=True,
    )

    assert state.is_failed()
    assert "data validation failed (stage validate, orchestration.gate)" in state.message
    with pytest.raises(Exception, match="expectation failed"):
        state.result()
    assert trace(fake_project, "validate")
    for stage in ("train_vae", "train_gan", "train_evaluator", "evaluate", "register"):
        assert trace(fake_project, stage) == [], stage


def test_invalid_override_fails_before_any_stage(fake_project: Path) -> None:
    before = (fake_project / "params.yaml").read_text()

    state = genpipe_pipeline(
        project_dir=str(fake_project), overrides=["vae.epochs=-3"], return_state=True
    )

    assert state.is_failed()
    with pytest.raises(Exception, match=r"vae\.epochs: Input should be greater than 0"):
        state.result()
    assert (fake_project / "params.yaml").read_text() == before
    assert not (fake_project / "trace").exists()


def test_a_policy_naming_an_unknown_stage_fails_before_params_change(fake_project: Path) -> None:
    before = (fake_project / "params.yaml").read_text()

    state = genpipe_pipeline(
        project_dir=str(fake_project),
        overrides=["vae.epochs=2", "+orchestration.timeouts.train_vea=60"],
        return_state=True,
    )

    assert state.is_failed()
    with pytest.raises(Exception, match=r"orchestration.timeouts names \['train_vea'\]"):
        state.result()
    assert (fake_project / "params.yaml").read_text() == before


def test_stage_timeout_stops_the_stage_and_fails_the_flow(fake_project: Path) -> None:
    (fake_project / "download_hangs").touch()

    # long enough for DVC and the fake stage to start on a busy machine, then it hangs
    state = genpipe_pipeline(
        project_dir=str(fake_project),
        overrides=["orchestration.timeouts.download=30", "orchestration.retries.download=0"],
        return_state=True,
    )

    assert state.is_failed()
    with pytest.raises(Exception, match="stage 'download' timed out after 30 s"):
        state.result()
    [record] = trace(fake_project, "download")  # started, never finished
    assert not _alive(record["pid"])  # the stage command was stopped, not only DVC


def _alive(pid: int) -> bool:
    import psutil  # a DVC dependency

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_cli_reports_a_bad_override_and_exits_2(
    fake_project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["--project", str(fake_project), "-S", "vae.epoch=2"])

    assert code == 2
    err = capsys.readouterr().err
    assert "genpipe pipeline: error:" in err and "Could not override 'vae.epoch'" in err
