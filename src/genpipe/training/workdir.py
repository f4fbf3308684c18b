"""The work folder of one training run: resume checkpoints kept outside DVC's outputs.

DVC never run-caches a stage with a persisted output, so checkpoints are not outputs. They live
in a git-ignored folder keyed by everything that shapes the result (task, params sections,
data hash, genpipe's code): after a crash, the next `dvc repro` of the same stage finds the same
key and resumes; any change gives a new key, so a checkpoint is never resumed under another
config. A finished run deletes its folder (the run-cache keeps the result).

The folder's run.json names the MLflow run, the process that owns it and the stage's output
folder, whose own run.json names the key it was exported from: the always-run stage cleans a
folder whose owner is gone and whose result is already the stage's output (restored from the
run-cache, say) through genpipe.tracking.clean_orphans.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from genpipe import io

log = logging.getLogger(__name__)


def code_hash() -> str:
    """sha256 over genpipe's Python sources: a code change must not resume an old run."""
    import genpipe

    root = Path(genpipe.__file__).parent
    h = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        h.update(str(path.relative_to(root)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def run_key(task: str, config: dict[str, Any], data_hash: str) -> str:
    payload = {"task": task, "config": config, "data_hash": data_hash, "code": code_hash()}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class WorkDir:
    root: Path  # e.g. .genpipe/work/train_gan
    key: str

    @classmethod
    def for_run(cls, root: Path, task: str, config: dict[str, Any], data_hash: str) -> WorkDir:
        return cls(root, run_key(task, config, data_hash))

    @property
    def path(self) -> Path:
        return self.root / self.key[:16]

    @property
    def last(self) -> Path:
        return self.path / "last.pt"

    def recorded_run(self) -> str | None:
        """The MLflow run the last attempt opened (written before its first epoch)."""
        try:
            return json.loads((self.path / "run.json").read_text())["run_id"]
        except (FileNotFoundError, KeyError, json.JSONDecodeError):
            return None

    def record_run(self, run_id: str, owner: str, out: Path) -> None:
        io.write_json(
            self.path / "run.json", {"run_id": run_id, "owner": owner, "out": out.as_posix()}
        )

    def fresh(self) -> None:
        """Start over in this key's folder: no snapshot of an earlier attempt may leak in."""
        shutil.rmtree(self.path, ignore_errors=True)
        self.path.mkdir(parents=True)

    def finish(self) -> None:
        """The run is exported: drop its folder and any stale ones of other keys."""
        if self.root.is_dir():
            for folder in self.root.iterdir():
                shutil.rmtree(folder, ignore_errors=True)
