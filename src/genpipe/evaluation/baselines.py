"""Classical restoration baselines (torch only), so a learned method's gain means something.

Noise: a light Gaussian blur (σ = 0.5 px): on images a few strokes wide, a median filter or a
wider blur erases the strokes along with the noise. Masks: harmonic (diffusion) fill, i.e. missing
pixels relax to the average of their neighbours with the observed pixels held fixed, started
from each image's observed mean (the mean-fill baseline is that starting point).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from genpipe.evaluation.corruptions import Corruption


def gaussian_filter(x: Tensor, sigma: float = 0.5) -> Tensor:
    """Separable Gaussian blur with a 2·ceil(2σ)+1 tap kernel, reflect padding."""
    n, c, h, w = x.shape
    r = max(1, math.ceil(2 * sigma))
    offsets = torch.arange(-r, r + 1, dtype=x.dtype, device=x.device)
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    kernel = kernel / kernel.sum()
    flat = x.reshape(n * c, 1, h, w)
    mode = "reflect" if min(h, w) > r else "replicate"
    flat = F.conv2d(F.pad(flat, (r, r, 0, 0), mode=mode), kernel.view(1, 1, 1, -1))
    flat = F.conv2d(F.pad(flat, (0, 0, r, r), mode=mode), kernel.view(1, 1, -1, 1))
    return flat.view(n, c, h, w)


def mean_fill(corrupted: Tensor, mask: Tensor) -> Tensor:
    """Missing pixels take the image's mean observed value (per channel)."""
    mask = mask.expand_as(corrupted)
    observed_mean = (corrupted * mask).sum((2, 3), keepdim=True) / mask.sum(
        (2, 3), keepdim=True
    ).clamp_min(1)
    return mask * corrupted + (1 - mask) * observed_mean


def diffusion_fill(corrupted: Tensor, mask: Tensor, iterations: int | None = None) -> Tensor:
    """Harmonic inpainting by Jacobi iterations of the 4-neighbour average (batched).

    Jacobi needs O(side²) sweeps to carry boundary values into a hole, hence the default.
    """
    n, c, h, w = corrupted.shape
    iterations = iterations if iterations is not None else max(h, w) ** 2
    mask = mask.expand_as(corrupted).reshape(n * c, 1, h, w)
    observed = corrupted.reshape(n * c, 1, h, w)
    kernel = torch.tensor([[0, 0.25, 0], [0.25, 0, 0.25], [0, 0.25, 0]], dtype=corrupted.dtype)
    kernel = kernel.to(corrupted.device).view(1, 1, 3, 3)
    x = mean_fill(observed, mask)
    for _ in range(iterations):
        neighbours = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), kernel)  # [NC, 1, H, W]
        x = mask * observed + (1 - mask) * neighbours
    return x.view(n, c, h, w)


def classical_restore(corrupted: Tensor, mask: Tensor | None, corruption: Corruption) -> Tensor:
    """The classical baseline: Gaussian blur for noise, diffusion fill for masks."""
    if corruption.is_inpainting:
        if mask is None:
            raise ValueError(f"{corruption.name}: inpainting baseline needs a mask")
        return diffusion_fill(corrupted, mask).clamp(0, 1)
    return gaussian_filter(corrupted, sigma=0.5).clamp(0, 1)
