"""Run every corruption x (method | baseline) on the same test images and score each image.

Per-image scores are kept (not just means) so that report.py can bootstrap CIs, and the first
few images of every output are kept for the image panels.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from genpipe.config.evaluate import GaussianSsimConfig, LatentSearchConfig
from genpipe.evaluation import metrics
from genpipe.evaluation.baselines import classical_restore
from genpipe.evaluation.corruptions import Corruption, corrupt
from genpipe.evaluation.metrics.image import SSIM_K1, SSIM_K2
from genpipe.models.restoration import METHOD_MODEL, METHODS, restore

log = logging.getLogger(__name__)

BASELINES = ("corrupted", "classical")


@dataclass(frozen=True)
class CorruptionResult:
    corruption: Corruption
    scores: dict[str, dict[str, Tensor]]  # method or baseline -> metric -> per image [N]
    panel: dict[str, Tensor]  # "clean", "corrupted", each method/baseline -> first images
    seconds: dict[str, float] = field(default_factory=dict)  # method -> wall time


def gaussian_ssim_fits(config: GaussianSsimConfig, image_size: tuple[int, ...]) -> bool:
    """Whether the standard SSIM is scored on images of this (height, width): its window must
    fit, since a padded border would score pixels that are not there."""
    return min(image_size) >= config.window


def describe_ssim(
    ssim_window: int, gaussian: GaussianSsimConfig, image_size: tuple[int, ...]
) -> dict[str, str]:
    """The report's account of each SSIM figure, and why `ssim_gaussian` is absent if it is."""
    common = f"mean over the valid region (no padding), K1 {SSIM_K1}, K2 {SSIM_K2}, data range 1"
    h, w = image_size
    size = f"{gaussian.window}x{gaussian.window}"
    out = {"ssim": f"uniform {ssim_window}x{ssim_window} window, {common}"}
    if gaussian_ssim_fits(gaussian, image_size):
        out["ssim_gaussian"] = f"Gaussian {size} window, sigma {gaussian.sigma}, {common}"
    else:
        out["ssim_gaussian"] = f"not scored: the {h}x{w} images are smaller than its {size} window"
    return out


def score_images(
    restored: Tensor,
    clean: Tensor,
    mask: Tensor | None,
    ssim_window: int,
    ssim_gaussian: GaussianSsimConfig | None = None,
) -> dict[str, Tensor]:
    """psnr and ssim per image; ssim_gaussian (the standard SSIM) where its window fits the
    images; psnr_masked (on the missing pixels only) for inpainting."""
    out = {
        "psnr": metrics.psnr(restored, clean, data_range=1.0),
        "ssim": metrics.ssim(restored, clean, window=ssim_window, data_range=1.0),
    }
    if ssim_gaussian is not None and gaussian_ssim_fits(ssim_gaussian, tuple(clean.shape[-2:])):
        out["ssim_gaussian"] = metrics.ssim(
            restored,
            clean,
            window=ssim_gaussian.window,
            sigma=ssim_gaussian.sigma,
            data_range=1.0,
        )
    if mask is not None:
        out["psnr_masked"] = metrics.psnr(restored, clean, data_range=1.0, mask=1 - mask)
    return out


def run_corruption(
    models: dict[str, nn.Module],
    clean: Tensor,
    corruption: Corruption,
    search: LatentSearchConfig,
    seed: int,
    ssim_window: int,
    extra: dict[str, tuple[nn.Module, str]] | None = None,
    panel_size: int = 8,
    ssim_gaussian: GaussianSsimConfig | None = None,
) -> CorruptionResult:
    """Corrupt once, then restore with both baselines, every method whose model is given, and
    each `extra` output name -> (model, method) (the current champion). Without
    `ssim_gaussian` the standard SSIM is not scored (the compute-matched benchmark needs PSNR
    only)."""
    corrupted, mask = corrupt(clean, corruption, seed)
    outputs = {"corrupted": corrupted, "classical": classical_restore(corrupted, mask, corruption)}
    runs = {m: (models[METHOD_MODEL[m]], m) for m in METHODS if METHOD_MODEL[m] in models}
    seconds: dict[str, float] = {}
    for name, (model, method) in {**runs, **(extra or {})}.items():
        start = time.perf_counter()
        outputs[name] = restore(model, corrupted, mask, method, search, seed)
        seconds[name] = time.perf_counter() - start
    scores = {
        name: score_images(x, clean, mask, ssim_window, ssim_gaussian)
        for name, x in outputs.items()
    }
    panel = {"clean": clean[:panel_size], **{k: v[:panel_size] for k, v in outputs.items()}}
    log.info(
        "%s: %s",
        corruption.name,
        ", ".join(f"{k} {float(v['psnr'].mean()):.2f} dB" for k, v in scores.items()),
    )
    return CorruptionResult(corruption, scores, panel, seconds)


def restoration_subset(n_test: int, n_restore: int, seed: int) -> Tensor:
    """Sorted indices of the test images used for restoration (all of them if fewer)."""
    if n_restore >= n_test:
        return torch.arange(n_test)
    return (
        torch.randperm(n_test, generator=torch.Generator().manual_seed(seed))[:n_restore]
        .sort()
        .values
    )


def run_restoration(
    models: dict[str, nn.Module],
    clean: Tensor,
    corruptions: list[Corruption],
    search: LatentSearchConfig,
    seed: int,
    ssim_window: int,
    ssim_gaussian: GaussianSsimConfig,
    extra: dict[str, tuple[nn.Module, str]] | None = None,
) -> list[CorruptionResult]:
    return [
        run_corruption(
            models, clean, c, search, seed, ssim_window, extra, ssim_gaussian=ssim_gaussian
        )
        for c in corruptions
    ]
