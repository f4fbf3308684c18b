"""DVC experiments the way DVC's docs describe them: run with -S, compare, go back, lose nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.e2e.test_dvc_pipeline import commit, dvc, ran, repro

pytestmark = pytest.mark.slow


def ok(project: Path, *args: str) -> str:
    done = dvc(project, *args)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout + done.stderr


def test_experiment_round_trip(project: Path) -> None:
    repro(project)
    repro(project)  # the snapshot of the champions the first run registered
    commit(project, "baseline")  # dvc.lock, data/metrics.json and the plot tables go to git
    baseline = (project / "data/metrics.json").read_text()

    # an experiment: only the GAN branch reruns
    run = ok(project, "exp", "run", "-n", "longer-gan", "-S", "gan.epochs=3")
    expected = {"champions", "train_gan", "score_val@gan", "evaluate", "score_champions", "decide"}
    assert expected <= ran(run), run
    assert "train_vae" not in ran(run)

    shown = json.loads(ok(project, "exp", "show", "--json"))
    rows = {}
    for commit_entry in shown:
        rows[commit_entry["rev"]] = commit_entry
        for exp in commit_entry.get("experiments") or []:
            for revision in exp["revs"]:
                rows[revision["name"] or revision["rev"]] = revision
    headline = "data/metrics.json"

    def metrics(entry: dict) -> dict:
        return entry["data"]["metrics"][headline]["data"]

    assert metrics(rows["workspace"])["generation"]["winner"] in ("vae", "gan")
    head = next(e for e in shown if e["rev"] != "workspace")
    assert (
        metrics(head)["generation"]["fd"]["gan"] == json.loads(baseline)["generation"]["fd"]["gan"]
    )
    assert "gan" in metrics(rows["longer-gan"])["generation"]["fd"]

    diff = json.loads(ok(project, "metrics", "diff", "--json"))  # workspace against HEAD
    assert "generation.fd.gan" in diff[headline]

    # back to the baseline: outputs come from the cache, nothing runs
    applied = ok(project, "exp", "apply", "HEAD")
    assert "Running stage" not in applied
    assert (project / "data/metrics.json").read_text() == baseline
    status = json.loads(ok(project, "status", "--json"))
    assert "train_gan" not in status and "evaluate" not in status
    again = repro(project)  # the registry snapshot, and what depends on it if a champion moved
    assert {"champions"} <= ran(again) <= {"champions", "score_champions", "decide", "register"}

    # and back to the experiment again, also from the cache
    ok(project, "exp", "apply", "longer-gan")
    assert "train_gan" not in ran(repro(project))
    ok(project, "exp", "remove", "longer-gan")
