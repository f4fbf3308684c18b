"""Per-image restoration metrics (PSNR, SSIM) for small images, returned per image for CIs."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from genpipe.evaluation.metrics._inputs import MetricInputError

# SSIM's stabilising constants (Wang et al. 2004), relative to the data range.
SSIM_K1, SSIM_K2 = 0.01, 0.03
# PSNR is capped at 100 dB (MSE floored at 1e-10 · range²): an exact copy would give inf, which
# breaks means, bootstrap CIs and JSON reports.
_MIN_RELATIVE_MSE = 1e-10


def _pair(x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    if x.shape != y.shape or x.ndim != 4:
        raise MetricInputError(
            f"expected two image batches of the same shape [N, C, H, W], got "
            f"{tuple(x.shape)} and {tuple(y.shape)}"
        )

    def as64(t: Tensor) -> Tensor:
        return t.detach().to(device="cpu", dtype=torch.float64)  # metrics run on the CPU

    return as64(x), as64(y)


def psnr(x: Tensor, y: Tensor, data_range: float = 1.0, mask: Tensor | None = None) -> Tensor:
    """PSNR in dB per image [N]; with `mask` (1 = score this pixel) over the masked pixels only.

    The mask broadcasts to [N, C, H, W] (e.g. [N, 1, H, W] for all channels). Masked PSNR
    scores an inpainting method on the pixels it had to invent, not the ones it was given.
    """
    x, y = _pair(x, y)
    squared_error = (x - y).square()
    if mask is None:
        mse = squared_error.flatten(1).mean(dim=1)
    else:
        try:
            weights = mask.detach().to(device="cpu", dtype=torch.float64).expand_as(squared_error)
        except RuntimeError as err:
            raise MetricInputError(
                f"psnr: mask of shape {tuple(mask.shape)} does not broadcast to images "
                f"{tuple(x.shape)}; use [N, 1, H, W] or [N, C, H, W]"
            ) from err
        scored = weights.flatten(1).sum(dim=1)  # [N]
        if (scored <= 0).any():
            raise MetricInputError("psnr: some image has an empty mask, so nothing to score")
        mse = (squared_error * weights).flatten(1).sum(dim=1) / scored
    mse = mse.clamp_min(_MIN_RELATIVE_MSE * data_range**2)
    return 10 * torch.log10(data_range**2 / mse)


def _window(window: int, sigma: float | None, channels: int) -> Tensor:
    """A normalised [C, 1, w, w] window: uniform when sigma is None, else Gaussian(sigma)."""
    if sigma is None:
        kernel_1d = torch.full((window,), 1.0 / window, dtype=torch.float64)
    else:
        offsets = torch.arange(window, dtype=torch.float64) - (window - 1) / 2
        kernel_1d = torch.exp(-0.5 * (offsets / sigma) ** 2)
        kernel_1d /= kernel_1d.sum()
    return torch.outer(kernel_1d, kernel_1d).expand(channels, 1, window, window).contiguous()


def ssim(
    x: Tensor,
    y: Tensor,
    window: int = 3,
    data_range: float = 1.0,
    sigma: float | None = None,
) -> Tensor:
    """Mean SSIM per image [N] over the "valid" region (no padding) and all channels.

    The window is explicit because the usual 11x11 Gaussian (sigma 1.5) does not fit an 8x8
    digit: `window` x `window`, uniform when `sigma` is None (the default), Gaussian with that
    sigma otherwise. Local (co)variances are population moments under the window, as in Wang et
    al. 2004 and torchmetrics; constants K1=0.01, K2=0.03.
    """
    x, y = _pair(x, y)
    if window < 1 or window % 2 == 0:
        raise MetricInputError(f"ssim: window must be a positive odd size, got {window}")
    if sigma is not None and sigma <= 0:
        raise MetricInputError(f"ssim: sigma must be positive, got {sigma}")
    if min(x.shape[-2:]) < window:
        raise MetricInputError(f"ssim: window {window} is larger than images {tuple(x.shape[-2:])}")
    n, channels = x.shape[:2]
    kernel = _window(window, sigma, channels)
    stacked = torch.cat([x, y, x * x, y * y, x * y])  # [5N, C, H, W]
    moments = F.conv2d(stacked, kernel, groups=channels)  # [5N, C, H-w+1, W-w+1]
    mu_x, mu_y, ex2, ey2, exy = moments.split(n)
    var_x = (ex2 - mu_x.square()).clamp_min(0)
    var_y = (ey2 - mu_y.square()).clamp_min(0)
    cov_xy = exy - mu_x * mu_y
    c1, c2 = (SSIM_K1 * data_range) ** 2, (SSIM_K2 * data_range) ** 2
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov_xy + c2)) / (
        (mu_x.square() + mu_y.square() + c1) * (var_x + var_y + c2)
    )
    return ssim_map.flatten(1).mean(dim=1)
