"""A worker's pull (pipelines.stage_flow.pull_inputs) with real DVC: a controller checkout runs
and pushes the upstream stage to a folder remote; a workspace with only dvc.yaml, dvc.lock and
that remote gets exactly what the downstream stage's deps name, and nothing else."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from pipelines.stage_flow import pull_inputs
from tests.conftest import venv_bin

DVC_YAML = """\
stages:
  make:
    cmd: sh make.sh
    deps: [make.sh]
    outs: [d, f.txt]
    metrics:
      - m.json:
          cache: false
  read:
    cmd: cat d/x d/sub/z f.txt m.json > read.txt
    deps: [d/x, d/sub, f.txt, m.json]
    outs: [read.txt]
"""
MAKE = "mkdir -p d/sub && echo x > d/x && echo y > d/y && echo z > d/sub/z && echo f > f.txt "
MAKE += "&& echo '{\"m\": 1}' > m.json\n"


def checkout(folder: Path, remote: Path) -> Path:
    from dvc.config import Config
    from dvc.repo import Repo

    folder.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=folder, check=True)
    Repo.init(str(folder)).close()
    with Config(dvc_dir=str(folder / ".dvc")).edit("local") as local:
        local["remote"]["team"] = {"url": str(remote)}
        local["core"]["remote"] = "team"
    (folder / "dvc.yaml").write_text(DVC_YAML)
    (folder / "make.sh").write_text(MAKE)
    return folder


def repro(folder: Path, stage: str) -> None:
    subprocess.run([venv_bin() / "dvc", "repro", "--single-item", stage], cwd=folder, check=True,
                   capture_output=True)  # fmt: skip


def files(folder: Path) -> set[str]:
    skip = (".dvc", ".git")
    found = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
    return {p for p in found if not p.startswith(skip) and not p.endswith(".gitignore")}


def test_a_worker_pulls_what_its_stage_reads_and_nothing_else(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from genpipe import share

    remote = tmp_path / "remote"
    controller = checkout(tmp_path / "controller", remote)
    repro(controller, "make")
    share.push(controller, ["make"])

    worker = checkout(tmp_path / "worker", remote)
    (worker / "dvc.lock").write_text((controller / "dvc.lock").read_text())
    monkeypatch.chdir(worker)  # as the stage flow: DVC reads stage names from the folder
    pull_inputs.fn(worker, "read")

    # d/y is in the upstream folder, but no dep of `read` names it
    assert files(worker) == {"dvc.yaml", "dvc.lock", "make.sh", "d/x", "d/sub/z", "f.txt", "m.json"}
    repro(worker, "read")
    assert (worker / "read.txt").read_text() == 'x\nz\nf\n{"m": 1}\n'


def test_inputs_missing_from_the_remote_are_an_error_naming_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from genpipe.errors import GenpipeError

    remote = tmp_path / "remote"
    controller = checkout(tmp_path / "controller", remote)
    repro(controller, "make")  # never pushed
    worker = checkout(tmp_path / "worker", remote)
    (worker / "dvc.lock").write_text((controller / "dvc.lock").read_text())
    monkeypatch.chdir(worker)
    with pytest.raises(GenpipeError, match="is not on the DVC remote"):
        pull_inputs.fn(worker, "read")
