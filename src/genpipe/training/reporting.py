"""Per-epoch reporting: metrics to the open MLflow run and to the DVC plots CSV, image grids as
artifacts.

The plots CSV is rewritten from the full history each epoch (atomically), so a resumed run
continues the same curve instead of appending duplicates.
"""

from __future__ import annotations

import csv
import io as _io
import logging
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch

from genpipe import io, tracking
from genpipe.grids import save_grid

log = logging.getLogger(__name__)

GridFn = Callable[[], dict[str, torch.Tensor]]  # name -> images [N, C, H, W] in [0, 1]


def write_plots(path: Path, history: list[dict]) -> None:
    """history rows -> CSV with an `epoch` column first (what `dvc plots show` reads)."""
    columns: list[str] = ["epoch"]
    for row in history:
        columns += [k for k in row if k not in columns]
    buf = _io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in history:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
    io.write_text(path, buf.getvalue())


class MlflowReporter:
    """Logs into the active MLflow run; `grids` renders the current sample/recon images.

    `logged`: the last epoch the run already holds (a resumed run redoes the epochs after its
    last checkpoint, bit-identical; MLflow keeps every logged point, so they are not sent twice).
    """

    def __init__(self, plots_path: Path | None, grids: GridFn, logged: int = 0) -> None:
        self.plots_path = plots_path
        self.grids = grids
        self.logged = logged

    def log_epoch(self, epoch: int, metrics: dict[str, float], history: list[dict]) -> None:
        if epoch > self.logged:
            tracking.log_step(metrics, epoch)
        if self.plots_path is not None:
            write_plots(self.plots_path, history)

    def log_images(self, epoch: int) -> None:
        import mlflow

        if epoch <= self.logged:
            return
        with tempfile.TemporaryDirectory() as tmp:
            for name, images in self.grids().items():
                path = Path(tmp) / f"epoch_{epoch:04d}.png"
                save_grid(path, images)
                mlflow.log_artifact(str(path), artifact_path=name)
