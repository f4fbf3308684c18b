"""PNG image grids (sample grids, restoration panels, the CLI's pictures) through torchvision's
`make_grid` and `save_image`, on a white background.

Small images are upscaled (nearest neighbour) so an 8x8 digit is still readable on screen.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor

from genpipe import io


def upscale(images: Tensor, min_side: int) -> Tensor:
    """[N, C, H, W] by the smallest integer factor that makes the longer side >= min_side."""
    scale = max(1, -(-min_side // max(images.shape[-2:])))
    return images.repeat_interleave(scale, -2).repeat_interleave(scale, -1)


def save_grid(
    path: str | Path,
    images: Tensor,
    per_row: int | None = 8,
    min_side: int = 32,
    pad: int = 2,
) -> None:
    """Images [N, C, H, W] in [0, 1] as one PNG grid, `per_row` a row (None: square-ish),
    cells `pad` white pixels apart."""
    from torchvision.utils import save_image

    images = upscale(images.detach().float().cpu().clamp(0, 1), min_side)
    per_row = per_row or math.ceil(math.sqrt(images.shape[0]))
    with io.atomic_path(path) as tmp:
        save_image(images, tmp, format="png", nrow=per_row, padding=pad, pad_value=1.0)


def save_rows(path: str | Path, rows: Sequence[Tensor], min_side: int = 32, pad: int = 2) -> None:
    """One PNG, one row per entry of equally long rows (a restoration panel: clean, corrupted,
    each method...)."""
    save_grid(path, torch.cat(list(rows)), rows[0].shape[0], min_side, pad)
