"""DVC plots file and image grids written by the reporter."""

from __future__ import annotations

import csv
from pathlib import Path

import torch
from PIL import Image

from genpipe.grids import save_grid
from genpipe.training.reporting import write_plots


def test_plots_csv_has_epoch_first_and_one_row_per_epoch(tmp_path: Path) -> None:
    path = tmp_path / "plots" / "train.csv"
    history = [
        {"epoch": 1, "d_loss": 1.5, "g_loss": 0.25},
        {"epoch": 2, "d_loss": 1.25, "g_loss": 0.5},
    ]
    write_plots(path, history)
    write_plots(path, history[:1])  # a resumed run rewrites, never appends duplicates
    with path.open() as fh:
        rows = list(csv.DictReader(fh))
    assert rows == [{"epoch": "1", "d_loss": "1.5", "g_loss": "0.25"}]


def test_small_images_are_upscaled_in_the_grid(tmp_path: Path) -> None:
    save_grid(tmp_path / "g.png", torch.rand(16, 1, 8, 8), per_row=8)
    width, height = Image.open(tmp_path / "g.png").size
    assert (width, height) == (8 * 32 + 9 * 2, 2 * 32 + 3 * 2)
