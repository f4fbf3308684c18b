"""genpipe.share's git side: what a share commits, and what it refuses to leave behind."""

from __future__ import annotations

import subprocess
from pathlib import Path

from genpipe.share import _git_changes


def _git(repo: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
        cwd=repo,
        check=True,
        capture_output=True,
    )


def test_results_are_committed_and_other_changes_named(tmp_path: Path) -> None:
    _git(tmp_path, "init", "-q")
    (tmp_path / "data").mkdir()
    for name in ("dvc.lock", "src.py", "data/metrics.json"):
        (tmp_path / name).write_text("a")
    _git(tmp_path, "add", "-A")
    _git(tmp_path, "commit", "-qm", "x")
    (tmp_path / "data/metrics.json").write_text("b")  # a modified first entry (" M ...")
    (tmp_path / "dvc.lock").write_text("b")
    (tmp_path / "src.py").write_text("b")
    (tmp_path / "new.txt").write_text("n")
    results, other = _git_changes(tmp_path, ["dvc.lock", "params.yaml", "data/metrics.json"])
    assert results == ["data/metrics.json", "dvc.lock"]
    assert other == ["new.txt", "src.py"]
