"""How a conv stack adapts to the image size: 8x8 digits, 16x16, 28x28 MNIST, 32x32 RGB."""

from __future__ import annotations

import math


def spatial_plan(size: int, smallest: int = 4) -> list[int]:
    """Sizes from the input down to <= `smallest`, halving (ceil) each stride-2 step.

    8 -> [8, 4]; 16 -> [16, 8, 4]; 28 -> [28, 14, 7, 4]; 32 -> [32, 16, 8, 4].
    """
    if size < 4:
        raise ValueError(f"images must be at least 4x4, got {size}")
    sizes = [size]
    while sizes[-1] > smallest:
        sizes.append(math.ceil(sizes[-1] / 2))
    return sizes


def channel_plan(base: int, levels: int, cap: int = 256) -> list[int]:
    """Channels per resolution level, doubling from `base` as the image shrinks."""
    return [min(base * 2**i, cap) for i in range(levels)]
