"""genpipe.tracking's sweep runs: one parent per sweep, nested children, found again on a rerun;
retention drops the runs of members DVC no longer holds."""

from __future__ import annotations

from pathlib import Path

from mlflow import MlflowClient

from genpipe import tracking


def test_children_nest_under_one_parent_that_a_rerun_finds_again(tmp_path: Path) -> None:
    parent = tracking.open_sweep_run("digits", "abc123", "sweep train.seed", {"sweep": "x"})
    child, finished = tracking.member_run(parent, "seed-1-aaaaaaa", {"train.seed": "1"})
    assert not finished
    tracking.close_run(child, {"generation.fd.vae": 4.5}, {"dvc.experiment": "seed-1-aaaaaaa"})
    failed, _ = tracking.member_run(parent, "seed-2-bbbbbbb", {"train.seed": "2"})
    tracking.close_run(failed, {"seconds": 3.0}, failed=True)
    table = tmp_path / "sweep.md"
    table.write_text("| member |\n")
    tracking.close_run(parent, {"members": 2}, artifacts=[table], failed=True)

    client = MlflowClient()
    runs = {
        r.info.run_name: r for r in client.search_runs([client.get_run(parent).info.experiment_id])
    }
    for name in ("seed-1-aaaaaaa", "seed-2-bbbbbbb"):
        assert runs[name].data.tags["mlflow.parentRunId"] == parent
    assert runs["seed-1-aaaaaaa"].data.params == {"train.seed": "1"}
    assert runs["seed-1-aaaaaaa"].data.metrics["generation.fd.vae"] == 4.5
    assert runs["seed-2-bbbbbbb"].info.status == "FAILED"
    assert [a.path for a in client.list_artifacts(parent)] == ["sweep.md"]

    # the same sweep again: the same parent; a finished member keeps its run, a failed one retries
    assert tracking.open_sweep_run("digits", "abc123", "sweep train.seed", {}) == parent
    assert tracking.member_run(parent, "seed-1-aaaaaaa", {}) == (child, True)
    retry, finished = tracking.member_run(parent, "seed-2-bbbbbbb", {})
    assert retry != failed and not finished


def test_retention_drops_removed_members_and_their_stage_runs_only(
    tmp_path: Path, monkeypatch
) -> None:
    parent = tracking.open_sweep_run("digits", "s1", "sweep", {})
    kept, _ = tracking.member_run(parent, "kept-1111111", {})
    removed, _ = tracking.member_run(parent, "removed-2222222", {})
    for run in (kept, removed):
        tracking.close_run(run, {})
    monkeypatch.setenv("GENPIPE_PARENT_RUN_ID", removed)  # a stage run of the removed member
    stage = tracking.record_run(tracking.RunRecord("train_vae", "digits", started=0.0))
    assert MlflowClient().get_run(stage).data.tags["mlflow.parentRunId"] == removed

    assert sorted(tracking.drop_member_runs({"kept-1111111"}, dry=True)) == sorted([removed, stage])
    assert MlflowClient().get_run(removed).info.lifecycle_stage == "active"  # dry: nothing yet
    tracking.drop_member_runs({"kept-1111111"})
    client = MlflowClient()
    assert client.get_run(removed).info.lifecycle_stage == "deleted"
    assert client.get_run(stage).info.lifecycle_stage == "deleted"
    assert client.get_run(kept).info.lifecycle_stage == "active"
    assert client.get_run(parent).info.lifecycle_stage == "active"
