"""Two checkouts, A and B, on one `mlflow server`: the registry is state `dvc repro` sees (the
champions snapshot) and register is compare-and-set, so B's next `dvc repro` re-evaluates
against the champion A promoted instead of reverting it; a rollback sticks through `dvc repro`,
as the README says."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from mlflow import MlflowClient

from tests.conftest import copy_project, venv_bin
from tests.e2e.test_dvc_pipeline import ran
from tests.e2e.tiny import shrink_params
from tests.registry.conftest import mlflow_server  # noqa: F401  (the session's server)

pytestmark = pytest.mark.slow

TASKS = ("generation", "restoration")
# B's models barely move from their initialisation: A's, trained as usual, beat them on both
# tasks (point estimates decide, so the outcome does not hang on CI widths of tiny runs).
UNTRAINED = {
    "vae": {"lr": 1.0e-7},
    "gan": {"lr": {"generator": 1.0e-7, "discriminator": 1.0e-7}},
}


def checkout(root: Path, extra: dict) -> Path:
    """A copy of the project with tiny params; the two share one DVC cache (as a team shares its
    remote), so the second restores the data stages and the evaluator from DVC's run-cache."""
    project = copy_project(root)
    shared = root.parent / "dvc-cache"
    subprocess.run(
        [str(venv_bin() / "dvc"), "cache", "dir", "--local", str(shared)], cwd=project, check=True
    )
    shrink_params(
        project, {"evaluate": {"draws": 2}, "register": {"tie_rule": "point_estimate"}, **extra}
    )
    (project / "dvc.lock").unlink(missing_ok=True)
    return project


def dvc(project: Path, server: str, *args: str) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "PATH": f"{venv_bin()}{os.pathsep}{os.environ['PATH']}",
        "MLFLOW_TRACKING_URI": server,
    }
    env.pop("GENPIPE_ARTIFACT_ROOT", None)
    return subprocess.run(
        [str(venv_bin() / "dvc"), *args], cwd=project, env=env, capture_output=True, text=True
    )


def repro(project: Path, server: str, *args: str) -> str:
    done = dvc(project, server, "repro", *args)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    return done.stdout + done.stderr


def registry(server: str) -> dict[str, tuple[list[int], str | None]]:
    client = MlflowClient(tracking_uri=server)
    found = {}
    for task in TASKS:
        name = f"genpipe-digits-{task}"
        versions = sorted(int(v.version) for v in client.search_model_versions(f"name = '{name}'"))
        aliases = client.get_registered_model(name).aliases
        found[task] = (versions, str(aliases["champion"]) if "champion" in aliases else None)
    return found


def decision(project: Path) -> dict:
    return json.loads((project / "data/register/decision.json").read_text())


def test_b_reevaluates_against_the_champion_a_promoted(tmp_path: Path, mlflow_server: str) -> None:  # noqa: F811
    server = mlflow_server
    b = checkout(tmp_path / "b", UNTRAINED)
    a = checkout(tmp_path / "a", {})

    # B first: its near-untrained models are the first champions
    repro(b, server)
    assert registry(server) == {t: ([1], "1") for t in TASKS}

    # A: its champions stage sees B's v1, scores it beside A's models, and A's win
    first_a = repro(a, server)
    assert {"champions", "score_champions", "decide", "register"} <= ran(first_a)
    for task in TASKS:
        d = decision(a)["tasks"][task]
        assert d["incumbent"]["version"] == "1" and d["incumbent"]["scored"], d
        assert d["champion"] == "challenger", d["reason"]
    assert registry(server) == {t: ([1, 2], "2") for t in TASKS}

    # B's stale decision (made against "no champion") is refused, naming A's champion
    stale = dvc(b, server, "repro", "--single-item", "--force", "register")
    assert stale.returncode != 0
    said = stale.stdout + stale.stderr
    assert "the champion moved since this decision was made against no champion" in said
    assert "it is now v2, a" in said and f":{a}" in said  # registered by A's checkout
    assert "`dvc repro` re-evaluates against the new champion" in said
    assert registry(server) == {t: ([1, 2], "2") for t in TASKS}

    # B's next repro re-evaluates against v2 instead of reverting it: nothing retrains
    again_b = repro(b, server)
    assert ran(again_b) == {"champions", "score_champions", "decide", "register"}, again_b
    for task in TASKS:
        d = decision(b)["tasks"][task]
        assert d["incumbent"]["version"] == "2" and d["champion"] == "incumbent", d["reason"]
    # the best candidate by the decision rule holds champion, one version per candidate
    assert registry(server) == {t: ([1, 2], "2") for t in TASKS}
    assert ran(repro(b, server)) == {"champions"}  # unmoved: nothing beyond the snapshot

    # README: a rollback sticks; `dvc repro` scores the restored champion and keeps it
    genpipe = str(venv_bin() / "genpipe")
    env = {**os.environ, "MLFLOW_TRACKING_URI": server}
    rolled = subprocess.run(
        [genpipe, "registry", "rollback", "generation"],
        cwd=a,
        env=env,
        capture_output=True,
        text=True,
    )
    assert rolled.returncode == 0 and "champion v2 -> v1" in rolled.stdout, rolled.stderr
    after = repro(a, server)
    assert ran(after) == {"champions", "score_champions", "decide", "register"}, after
    d = decision(a)["tasks"]["generation"]
    assert d["champion"] == "incumbent" and "rolled back" in d["reason"], d["reason"]
    assert registry(server)["generation"] == ([1, 2], "1")
    assert registry(server)["restoration"] == ([1, 2], "2")
