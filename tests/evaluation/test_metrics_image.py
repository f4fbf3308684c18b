"""PSNR and SSIM against torchmetrics, on 8x8 images like the digits."""

from __future__ import annotations

import pytest
import torch
from torchmetrics.functional.image import (
    peak_signal_noise_ratio,
    structural_similarity_index_measure,
)

from genpipe.evaluation.metrics import MetricInputError, psnr, ssim


@pytest.fixture
def images() -> tuple[torch.Tensor, torch.Tensor]:
    """Clean [6, 3, 8, 8] images in [0, 1] and a noisy copy."""
    g = torch.Generator().manual_seed(0)
    clean = torch.rand(6, 3, 8, 8, generator=g, dtype=torch.float64)
    noisy = (clean + 0.1 * torch.randn(6, 3, 8, 8, generator=g, dtype=torch.float64)).clamp(0, 1)
    return clean, noisy


def test_psnr_matches_torchmetrics_per_image(images) -> None:
    clean, noisy = images
    expected = peak_signal_noise_ratio(
        noisy, clean, data_range=1.0, reduction="none", dim=(1, 2, 3)
    )
    got = psnr(noisy, clean)
    assert got.shape == (6,)
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=0)
    expected_255 = peak_signal_noise_ratio(
        255 * noisy, 255 * clean, data_range=255.0, reduction="none", dim=(1, 2, 3)
    )
    torch.testing.assert_close(psnr(255 * noisy, 255 * clean, data_range=255.0), expected_255)


def test_masked_psnr_scores_only_masked_pixels(images) -> None:
    clean, noisy = images
    mask = torch.zeros(6, 1, 8, 8)
    mask[:, :, 2:6, 2:6] = 1  # the centre block, for every channel
    restored = noisy.clone()
    restored[:, :, 2:6, 2:6] = clean[:, :, 2:6, 2:6] + 0.05  # a better guess inside the hole
    centre = (restored - clean)[:, :, 2:6, 2:6]
    expected = 10 * torch.log10(1 / centre.square().flatten(1).mean(1))
    torch.testing.assert_close(psnr(restored, clean, mask=mask), expected)
    torch.testing.assert_close(psnr(noisy, clean, mask=torch.ones(6, 3, 8, 8)), psnr(noisy, clean))
    assert (psnr(restored, clean, mask=mask) > psnr(restored, clean)).all()


def test_psnr_of_identical_images_is_capped_not_infinite(images) -> None:
    clean, _ = images
    assert torch.equal(psnr(clean, clean), torch.full((6,), 100.0, dtype=torch.float64))


def test_psnr_rejects_empty_or_misshapen_masks(images) -> None:
    clean, noisy = images
    with pytest.raises(MetricInputError, match="empty mask"):
        psnr(noisy, clean, mask=torch.zeros(6, 1, 8, 8))
    with pytest.raises(MetricInputError, match="broadcast"):
        psnr(noisy, clean, mask=torch.ones(6, 2, 8, 8))


def _torchmetrics_valid_ssim(x, y, crop: int, **kwargs) -> torch.Tensor:
    """torchmetrics pads by reflection; its full SSIM map cropped by the pad is the valid map."""
    _, full = structural_similarity_index_measure(
        x, y, data_range=1.0, reduction="none", return_full_image=True, **kwargs
    )
    return full[..., crop:-crop, crop:-crop].flatten(1).mean(1)


@pytest.mark.parametrize(("window", "sigma"), [(3, 0.4), (5, 0.6)])
def test_gaussian_ssim_matches_torchmetrics(images, window: int, sigma: float) -> None:
    clean, noisy = images
    # torchmetrics sizes a Gaussian window as 2·int(3.5·sigma + 0.5) + 1: 3 for 0.4, 5 for 0.6.
    expected = _torchmetrics_valid_ssim(noisy, clean, crop=window // 2, sigma=sigma)
    got = ssim(noisy, clean, window=window, sigma=sigma)
    assert got.shape == (6,)
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-9)


def test_standard_ssim_on_28x28_matches_torchmetrics_inside_the_border() -> None:
    """The standard SSIM (11x11 Gaussian, sigma 1.5) on MNIST-sized images.

    torchmetrics pads by reflection and averages its SSIM map over the padded border too; Wang
    et al.'s reference code and scikit-image average over the valid region, as genpipe does. So
    the comparison crops torchmetrics' full map by the half window (5 px), and its own mean is
    checked to differ: that is why the crop is needed, not a tolerance.
    """
    g = torch.Generator().manual_seed(3)
    clean = torch.rand(5, 1, 28, 28, generator=g, dtype=torch.float64)
    restored = (clean + 0.2 * torch.randn(clean.shape, generator=g, dtype=torch.float64)).clamp(
        0, 1
    )
    # torchmetrics sizes the Gaussian from sigma: 2·int(3.5·1.5 + 0.5) + 1 = 11
    expected = _torchmetrics_valid_ssim(restored, clean, crop=5, sigma=1.5, kernel_size=11)
    got = ssim(restored.float(), clean.float(), window=11, sigma=1.5)
    assert got.shape == (5,)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)
    padded_mean = structural_similarity_index_measure(
        restored, clean, data_range=1.0, sigma=1.5, kernel_size=11, reduction="none"
    )
    assert (padded_mean - got).abs().max() > 1e-3


def test_uniform_ssim_matches_torchmetrics(images) -> None:
    clean, noisy = images
    expected = _torchmetrics_valid_ssim(noisy, clean, crop=1, gaussian_kernel=False, kernel_size=3)
    torch.testing.assert_close(ssim(noisy, clean, window=3), expected, rtol=1e-6, atol=1e-9)


def test_ssim_is_one_for_identical_images_and_drops_with_noise(images) -> None:
    clean, noisy = images
    torch.testing.assert_close(ssim(clean, clean), torch.ones(6, dtype=torch.float64))
    heavier = clean + 0.3 * torch.randn(clean.shape, generator=torch.Generator().manual_seed(1))
    assert (ssim(heavier.clamp(0, 1), clean) < ssim(noisy, clean)).all()
    assert (ssim(noisy, clean) < 1).all()


def test_ssim_rejects_windows_that_do_not_fit(images) -> None:
    clean, noisy = images
    with pytest.raises(MetricInputError, match="larger than images"):
        ssim(noisy, clean, window=9)
    with pytest.raises(MetricInputError, match="odd"):
        ssim(noisy, clean, window=4)
