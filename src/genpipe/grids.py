"""PNG image grids (sample grids, restoration panels, the CLI's pictures), laid out as
torchvision's `make_grid` lays them (cells `pad` pixels apart and from the border, RGB) on a white
background, and written with Pillow: importing torchvision loads its models and ops packages,
which a stage that only draws a grid does not need.

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
    from PIL import Image

    images = upscale(images.detach().float().cpu().clamp(0, 1), min_side)
    if images.shape[1] == 1:
        images = images.expand(-1, 3, -1, -1)
    n, channels, height, width = images.shape
    per_row = min(per_row or math.ceil(math.sqrt(n)), n)
    rows = math.ceil(n / per_row)
    grid = torch.ones(channels, rows * (height + pad) + pad, per_row * (width + pad) + pad)
    for i, image in enumerate(images):
        row, column = divmod(i, per_row)
        top, left = pad + row * (height + pad), pad + column * (width + pad)
        grid[:, top : top + height, left : left + width] = image
    pixels = grid.mul(255).add_(0.5).clamp_(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()
    with io.atomic_path(path) as tmp:
        Image.fromarray(pixels).save(tmp, format="png")


def save_rows(path: str | Path, rows: Sequence[Tensor], min_side: int = 32, pad: int = 2) -> None:
    """One PNG, one row per entry of equally long rows (a restoration panel: clean, corrupted,
    each method...)."""
    save_grid(path, torch.cat(list(rows)), rows[0].shape[0], min_side, pad)
