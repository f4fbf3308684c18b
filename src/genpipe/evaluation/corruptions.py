"""Corruptions for the restoration task: Gaussian noise and two inpainting masks.

Each corruption is a pure function of (clean images, seed): the same seed gives the same noise
and the same missing pixels, so every method and baseline is scored on identical inputs and a
rerun reproduces the report. Masks use 1 = observed pixel, shaped [N, 1, H, W] (shared by all
channels); missing pixels are set to 0.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from genpipe.config import EvaluateConfig

Kind = Literal["noise", "center_block", "random_pixels"]


@dataclass(frozen=True)
class Corruption:
    """`amount` is σ for noise, the block side as a fraction of the image side for
    center_block, and the fraction of missing pixels for random_pixels."""

    name: str
    kind: Kind
    amount: float

    @property
    def is_inpainting(self) -> bool:
        return self.kind != "noise"


def corruptions_from_config(config: EvaluateConfig) -> list[Corruption]:
    """The protocol's corruptions, in report order: noise levels, then the two masks."""
    noise = [
        Corruption(f"denoise_sigma{sigma:g}", "noise", float(sigma))
        for sigma in config.noise_sigmas
    ]
    return [
        *noise,
        Corruption("inpaint_center", "center_block", config.masks.center_block),
        Corruption("inpaint_random", "random_pixels", config.masks.random_pixels),
    ]


def _generator(corruption: Corruption, seed: int) -> torch.Generator:
    """A CPU generator per (corruption, seed): corruptions do not share random streams."""
    return torch.Generator().manual_seed(seed * 1_000_003 + zlib.crc32(corruption.name.encode()))


def center_block_mask(n: int, height: int, width: int, fraction: float) -> Tensor:
    """[N, 1, H, W] mask missing a centred block of side round(fraction * side), at least 1."""
    bh, bw = max(1, round(fraction * height)), max(1, round(fraction * width))
    top, left = (height - bh) // 2, (width - bw) // 2
    mask = torch.ones(n, 1, height, width)
    mask[:, :, top : top + bh, left : left + bw] = 0
    return mask


def random_pixel_mask(
    n: int, height: int, width: int, fraction: float, generator: torch.Generator
) -> Tensor:
    """[N, 1, H, W] mask missing `fraction` of pixels per image, chosen uniformly (at least one
    pixel observed and one missing, so both PSNRs are defined)."""
    n_pixels = height * width
    missing = min(max(1, round(fraction * n_pixels)), n_pixels - 1)
    ranks = torch.rand(n, n_pixels, generator=generator).argsort(dim=1).argsort(dim=1)  # [N, HW]
    return (ranks >= missing).float().view(n, 1, height, width)


def corrupt(clean: Tensor, corruption: Corruption, seed: int = 0) -> tuple[Tensor, Tensor | None]:
    """clean [N, C, H, W] in [0, 1] -> (corrupted in [0, 1], mask or None for noise)."""
    gen = _generator(corruption, seed)
    n, _, h, w = clean.shape
    if corruption.kind == "noise":
        noise = torch.randn(clean.shape, generator=gen).to(clean.device)
        return (clean + corruption.amount * noise).clamp(0, 1), None
    if corruption.kind == "center_block":
        mask = center_block_mask(n, h, w, corruption.amount)
    else:
        mask = random_pixel_mask(n, h, w, corruption.amount, gen)
    mask = mask.to(clean.device)
    return clean * mask, mask
