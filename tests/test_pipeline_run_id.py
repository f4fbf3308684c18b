"""One pipeline run id per `dvc repro`: every stage of one run shares it; the env var wins."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from genpipe.settings import is_dvc_command, pipeline_run_id
from tests.conftest import venv_bin

# Each toy stage writes the id genpipe.settings gives it, as a stage's MLflow tag would carry it.
DVC_YAML = """\
stages:
  first:
    cmd: python -c "from genpipe.settings import pipeline_run_id as p; open('first.txt', 'w').write(str(p()))"
    deps: [seed.txt]
    outs: [first.txt]
  second:
    cmd: python -c "from genpipe.settings import pipeline_run_id as p; open('second.txt', 'w').write(str(p()))"
    deps: [first.txt]
    outs: [second.txt]
"""


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["/p/.venv/bin/python3", "/p/.venv/bin/dvc", "repro"], True),
        (["dvc", "exp", "run", "-S", "vae.epochs=2"], True),
        (["/usr/bin/python3", "-m", "dvc", "--wait-for-lock", "repro"], True),
        (["/bin/sh", "-c", "python -m genpipe.stages.train_vae --params params.yaml"], False),
        (["python", "-m", "genpipe.stages.evaluate", "--out", "dvc"], False),
        (["/p/.venv/bin/python3", "/p/.venv/bin/dvc-data", "ls"], False),
        ([], False),
    ],
)
def test_which_processes_count_as_dvc(argv: list[str], expected: bool) -> None:
    assert is_dvc_command(argv) is expected


def test_no_dvc_ancestor_and_no_env_means_no_id() -> None:
    assert pipeline_run_id() is None  # pytest is not run by dvc


def _repro(repo: Path, *args: str, env: dict[str, str] | None = None) -> tuple[str, str]:
    path = f"{venv_bin()}{os.pathsep}{os.environ['PATH']}"
    run_env = {**os.environ, "PATH": path, **(env or {})}
    done = subprocess.run(
        [sys.executable, "-m", "dvc", "repro", *args],
        cwd=repo,
        env=run_env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return (repo / "first.txt").read_text(), (repo / "second.txt").read_text()


@pytest.mark.slow
def test_every_stage_of_one_dvc_repro_shares_one_id(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    for args in (["git", "init", "-q"], [sys.executable, "-m", "dvc", "init", "-q"]):
        subprocess.run(args, cwd=repo, check=True, capture_output=True)
    (repo / "dvc.yaml").write_text(DVC_YAML)
    (repo / "seed.txt").write_text("1")

    first, second = _repro(repo)
    assert first == second != "None"
    assert uuid.UUID(first)  # a well-formed id, not "none"

    again = _repro(repo, "--force")
    assert again[0] == again[1] != first  # a new `dvc repro` is a new pipeline run

    from_flow = _repro(repo, "--force", env={"GENPIPE_PIPELINE_RUN_ID": "flow-run-7"})
    assert from_flow == ("flow-run-7", "flow-run-7")  # the Prefect flow's id wins
