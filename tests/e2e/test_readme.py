"""README.md's `<!-- local -->` blocks, run verbatim, top to bottom, on a fresh clone.

The clone is a project copy with the committed dvc.lock and none of its outputs. Two things stand
in for what a user's machine gives: params.yaml shrunk to tiny models and committed (the clone's
HEAD; the block text is never changed), and the tests' venv linked as `.venv` (for `make
install`). Each block runs in its own `bash -euo pipefail` with the venv on PATH, like a shell
where `source .venv/bin/activate` ran; the README's own store (mlflow/mlflow.db) is the only one.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO, link_venv, venv_bin
from tests.e2e.test_dvc_pipeline import commit, ran
from tests.e2e.tiny import shrink_params
from tests.markdown_blocks import Block, local_blocks

pytestmark = [pytest.mark.slow, pytest.mark.timeout(5400)]


def user_env(home: Path) -> dict[str, str]:
    """A user's shell: the venv first on PATH, no test stores, no Prefect API set, a git identity."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("MLFLOW_", "PREFECT_", "GENPIPE_", "GIT_"))
        or k == "GENPIPE_CPU_SHARE"  # pytest-xdist's workers share the cores
    }
    env.update(
        {
            "HOME": str(home),
            "PATH": f"{venv_bin()}{os.pathsep}{env['PATH']}",
            "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
            "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t",
        }
    )  # fmt: skip
    return env


def run(block: Block, cwd: Path, env: dict[str, str]) -> str:
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", block.text],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=2400,
    )
    out = done.stdout + done.stderr
    assert done.returncode == 0, (
        f"README block at {block.where()} ({block.heading}) failed with exit {done.returncode}:\n"
        f"{block.text}---\n{out if len(out) < 9000 else out[:3000] + ' [...] ' + out[-6000:]}"
    )
    return out


def experiments_went_back_to_the_baseline(project: Path, env: dict[str, str], out: str) -> None:
    """The experiment reran only the GAN branch, its metrics differ from HEAD's, and `dvc exp
    apply HEAD` brought the baseline back from the cache: nothing is stale."""
    assert {"train_gan", "evaluate", "decide"} <= ran(out) and "train_vae" not in ran(out), out
    assert "generation.fd.gan" in out  # dvc metrics diff: the GAN's numbers moved
    committed = subprocess.run(
        ["git", "show", "HEAD:data/metrics.json"], cwd=project, capture_output=True, text=True
    )
    assert (project / "data/metrics.json").read_text() == committed.stdout
    status = subprocess.run(
        [str(venv_bin() / "dvc"), "status", "--json"],
        cwd=project, env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    stale = json.loads(status.stdout)
    assert "train_gan" not in stale and "evaluate" not in stale, stale


def test_readme_local_blocks_run_in_order_on_a_fresh_clone(
    project_copy: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    blocks = local_blocks(REPO / "README.md")
    assert blocks[0].text.strip() == "make pipeline", "the README starts with `make pipeline`"
    project = project_copy
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    monkeypatch.delenv("GENPIPE_ARTIFACT_ROOT")
    shrink_params(project, {"evaluate": {"draws": 2}})
    commit(project, "tiny params")
    link_venv(project)
    home = tmp_path / "home"
    home.mkdir()
    env = user_env(home)

    outputs = []
    for block in blocks:
        outputs.append(run(block, project, env))
        if block.heading == "Experiments and plots":
            experiments_went_back_to_the_baseline(project, env, outputs[-1])
        if block.heading == "Prefect flows":  # the experiment's params: its GAN is not retrained
            assert "train_gan=restored" in outputs[-1], outputs[-1][-3000:]

    joined = "\n".join(outputs)
    assert "Running stage 'train_gan'" in outputs[0]  # make pipeline trained
    for made in ("grid.png", "clean.png", "inpainted.png", "dvc_plots/offline/index.html"):
        assert (project / made).is_file(), f"no {made} after the README's blocks"
    assert "gan-lr" in joined  # the experiment was run and shown
    assert not (project / "mlflow.db").exists(), "a command created a stray ./mlflow.db"
    left = subprocess.run(
        [str(venv_bin() / "dvc"), "exp", "list", "--name-only"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert left.stdout.strip() == "", (
        f"experiments the README removes are still there: {left.stdout}"
    )
