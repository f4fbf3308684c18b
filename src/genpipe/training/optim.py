"""Optimiser construction shared by the training tasks."""

from __future__ import annotations

from collections.abc import Iterable

import torch

from genpipe.device import Runtime


def adam(
    params: Iterable[torch.nn.Parameter], lr: float, betas: tuple[float, float], runtime: Runtime
) -> torch.optim.Adam:
    """Adam with one fused kernel per step (CUDA and CPU), else the multi-tensor path."""
    fused = runtime.device.type in ("cuda", "cpu")
    return torch.optim.Adam(
        params, lr=lr, betas=betas, fused=fused, foreach=None if fused else True
    )
