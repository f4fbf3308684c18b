"""PNG image grids: sample grids, restoration panels and the CLI's pictures, drawn one way.

Small images are upscaled with nearest-neighbour so an 8x8 digit is still readable on screen.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from genpipe import io


def to_grid(rows: Sequence[Tensor], min_side: int = 32, pad: int = 2) -> np.ndarray:
    """Rows of images [n_i, C, H, W] in [0, 1] -> one uint8 grid [H', W'] or [H', W', 3].

    Each image is upscaled by the smallest integer factor that makes its longer side at least
    `min_side` pixels; cells are separated by `pad` white pixels.
    """
    _, c, h, w = rows[0].shape
    scale = max(1, -(-min_side // max(h, w)))
    cols = max(r.shape[0] for r in rows)
    cell_h, cell_w = h * scale + pad, w * scale + pad
    grid = torch.ones(c, len(rows) * cell_h + pad, cols * cell_w + pad)  # white background
    for i, row in enumerate(rows):
        big = (
            row.detach()
            .float()
            .cpu()
            .clamp(0, 1)
            .repeat_interleave(scale, 2)
            .repeat_interleave(scale, 3)
        )
        for j, img in enumerate(big):
            top, left = pad + i * cell_h, pad + j * cell_w
            grid[:, top : top + h * scale, left : left + w * scale] = img
    array = (grid * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    return array[:, :, 0] if c == 1 else array


def in_rows(images: Tensor, per_row: int | None = None) -> list[Tensor]:
    """[N, C, H, W] -> rows of `per_row` images (default: a square-ish layout)."""
    per_row = per_row or math.ceil(math.sqrt(images.shape[0]))
    return [images[i : i + per_row] for i in range(0, images.shape[0], per_row)]


def save_png(path: str | Path, array: np.ndarray) -> None:
    from PIL import Image

    with io.atomic_path(path) as tmp:
        Image.fromarray(array).save(tmp, format="PNG")


def save_rows(path: str | Path, rows: Sequence[Tensor], min_side: int = 32, pad: int = 2) -> None:
    """One PNG, one row per entry (a restoration panel: clean, corrupted, each method...)."""
    save_png(path, to_grid(rows, min_side, pad))


def save_grid(
    path: str | Path,
    images: Tensor,
    per_row: int | None = 8,
    min_side: int = 32,
    pad: int = 2,
) -> None:
    """Images [N, C, H, W] in [0, 1] as one PNG grid, `per_row` a row (None: square-ish)."""
    save_rows(path, in_rows(images, per_row), min_side, pad)
