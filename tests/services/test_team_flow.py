"""docs/team.md ("Running genpipe for a team"), run as written: the services host's block, then teammate A
(a clone of the code repo in its own folder: runs the pipeline, `make share`), then teammate B (a
fresh clone in another folder: pulls, and its `dvc repro` trains nothing and registers nothing).
A's stages log to the team's MLflow server (curves, models, champions) and write no SQLite store.

The one substitution: `make install` becomes a link to the test's venv (same packages, no
download). The services run on free ports and a short state folder, set as a host's admin would
with GENPIPE_SERVICES_* variables; these are the services' own, so they are started by the
README's `make services-up` here and stopped by its `make services-down`.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO, copy_project
from tests.e2e.test_dvc_pipeline import ran
from tests.e2e.tiny import shrink_params
from tests.markdown_blocks import command_blocks
from tests.services.conftest import exports, free_port

pytestmark = [pytest.mark.slow, pytest.mark.timeout(3600)]

VENV = Path(sys.executable).parent.parent
INSTALL = "make install && source .venv/bin/activate"


SQLITE_MAGIC = b"SQLite format 3\x00"


def sqlite_files(*roots: Path) -> list[Path]:
    found = []
    for root in roots:
        for path in root.rglob("*"):
            if path.is_file() and not path.is_symlink():
                with path.open("rb") as fh:
                    if fh.read(16) == SQLITE_MAGIC:
                        found.append(path)
    return found


def team_blocks() -> list[str]:
    """The command blocks of docs/team.md's services host and teammates sections, in order."""
    sections = ("The services host", "Teammates")
    return [b.text for b in command_blocks(REPO / "docs" / "team.md") if b.heading in sections]


def install_by_link(checkout: Path) -> str:
    """What stands for `make install`, as shell: the test's venv, and the files make installs from
    older than its stamp (a fresh clone's are new: make would reinstall genpipe, editable from
    this clone, into the test's venv)."""
    return (
        f"ln -s {VENV} .venv && touch -d @0 pyproject.toml requirements.lock"
        " && source .venv/bin/activate"
    )


def run_block(block: str, cwd: Path, env: dict[str, str]) -> str:
    script = block.replace(INSTALL, install_by_link(cwd))
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=3000,
    )
    out = done.stdout + done.stderr
    assert done.returncode == 0, (
        f"docs/team.md block failed in {cwd}:\n{script}\n---\n{out[-6000:]}"
    )
    return out


def test_the_readme_team_flow_with_two_clones(tmp_path: Path) -> None:
    from mlflow import MlflowClient

    from genpipe.services import supervisor
    from genpipe.services.settings import Layout

    services_block, share_block, pull_block = team_blocks()
    assert "make services-up" in services_block
    assert "make share" in share_block and "dvc pull" in pull_block
    home = tmp_path / "home"
    home.mkdir()
    state = Path(tempfile.mkdtemp(prefix="gp-flow-"))  # short: the postgres socket lives in it
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("MLFLOW_", "PREFECT_", "GENPIPE_", "GIT_"))
    }
    env.update(
        {
            "HOME": str(home),
            "PREFECT_HOME": str(home / ".prefect"),
            "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
            "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t",
            "GENPIPE_SERVICES_STATE_DIR": str(state),
            "GENPIPE_SERVICES_START_TIMEOUT_SECONDS": "900",  # a busy shared machine
            **{
                f"GENPIPE_SERVICES_{key}": str(free_port())
                for key in ("POSTGRES_PORT", "MLFLOW_PORT", "PREFECT_PORT", "DVC_REMOTE_SSH_PORT")
            },
        }
    )  # fmt: skip
    host = copy_project(tmp_path / "host" / "genpipe")  # the services host's checkout
    shrink_params(host, {"evaluate": {"draws": 2}})
    (host / "dvc.lock").unlink(missing_ok=True)
    for args in (["add", "-A"], ["commit", "-qm", "tiny params for the team flow"]):
        subprocess.run(["git", *args], cwd=host, env=env, check=True, capture_output=True)
    subprocess.run(["bash", "-c", install_by_link(host)], cwd=host, check=True)
    try:
        run_block(services_block, host, env)
        (tmp_path / "a").mkdir()
        (tmp_path / "b").mkdir()
        a_out = run_block(share_block, tmp_path / "a", env)
        assert {"check_params", "train_vae", "train_gan", "evaluate", "register"} <= ran(a_out)
        assert "pushed to git remote 'origin'" in a_out, a_out[-3000:]

        b_out = run_block(pull_block, tmp_path / "b", env)
        # only the registry check: register's record came with the pull, and A's share settled
        # the snapshot after A's promotion, so nothing downstream of it moved
        assert ran(b_out) == {"champions"}, b_out[-4000:]
        b = tmp_path / "b" / "genpipe-theirs"
        status = subprocess.run(
            ["git", "status", "--porcelain"], cwd=b, capture_output=True, text=True, check=True
        )
        assert status.stdout == ""  # the check changed nothing
        assert (b / "data/models/gan/model.pt").exists()

        client_env = exports((home / "team.env").read_text())
        client = MlflowClient(tracking_uri=client_env["MLFLOW_TRACKING_URI"])
        os.environ.update(
            {k: client_env[k] for k in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")}
        )
        try:
            runs = client.search_runs(
                [client.get_experiment_by_name("genpipe-digits").experiment_id]
            )
            versions = {
                task: len(client.search_model_versions(f"name='genpipe-digits-{task}'"))
                for task in ("generation", "restoration")
            }
            champions = [
                client.get_model_version_by_alias(f"genpipe-digits-{task}", "champion")
                for task in ("generation", "restoration")
            ]
            a = tmp_path / "a" / "genpipe-mine"
            params = yaml.safe_load((a / "params.yaml").read_text())
            epochs = {"train_vae": params["vae"]["epochs"], "train_gan": params["gan"]["epochs"]}
            curve = {"train_vae": "val_loss", "train_gan": "d_loss"}
            for r in runs:
                assert r.info.status == "FINISHED", (r.info.run_name, r.info.status)
                if r.info.run_name in epochs:  # a training's curve per epoch, and its model
                    history = client.get_metric_history(r.info.run_id, curve[r.info.run_name])
                    steps = [m.step for m in history]
                    assert steps == list(range(1, epochs[r.info.run_name] + 1)), steps
                    artifacts = {x.path for x in client.list_artifacts(r.info.run_id, "model")}
                    assert "model/model.pt" in artifacts
        finally:
            for k in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
                os.environ.pop(k, None)
        names = [r.info.run_name for r in runs]
        for stage in ("validate", "train_vae", "train_gan", "train_evaluator", "evaluate"):
            assert names.count(stage) == 1, (stage, names)  # ran once, by A
        assert versions == {"generation": 1, "restoration": 1}  # registered once, by A
        assert all(champions)
        # the services keep every store: none was written in A's clone or the services' artifacts
        assert sqlite_files(a, state / "mlflow-artifacts") == []
        assert (home / "team.env").stat().st_mode & 0o777 == 0o600
    finally:
        subprocess.run(["make", "services-down"], cwd=host, env=env, capture_output=True)
        if left := supervisor.orphans(Layout(state)):
            supervisor.stop_processes(left, 30)
        subprocess.run(["rm", "-rf", str(state)], check=False)
