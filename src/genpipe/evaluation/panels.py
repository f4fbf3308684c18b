"""PNG image grids: restoration panels (one row per stage of the story) and sample grids.

Small images are upscaled with nearest-neighbour so an 8x8 digit is still readable on screen.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from genpipe import io


def to_grid(rows: list[Tensor], min_side: int = 32, pad: int = 2) -> np.ndarray:
    """Rows of images [n_i, C, H, W] in [0, 1] -> one uint8 grid [H', W', C] (C = 1 or 3)."""
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


def save_png(path: str | Path, array: np.ndarray) -> None:
    from PIL import Image

    with io.atomic_path(path) as tmp:
        Image.fromarray(array).save(tmp, format="PNG")


def save_panel(path: str | Path, rows: dict[str, Tensor]) -> list[str]:
    """One row per entry (clean, corrupted, each method...); returns the row order for captions."""
    save_png(path, to_grid(list(rows.values())))
    return list(rows)


def save_samples(path: str | Path, images: Tensor, per_row: int = 8) -> None:
    rows = [images[i : i + per_row] for i in range(0, images.shape[0], per_row)]
    save_png(path, to_grid(rows))
