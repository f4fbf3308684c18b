from __future__ import annotations

import pytest
import torch

from genpipe.evaluation.baselines import (
    classical_restore,
    diffusion_fill,
    gaussian_filter,
    mean_fill,
)
from genpipe.evaluation.corruptions import Corruption, center_block_mask, corrupt
from genpipe.evaluation.metrics import psnr


def test_gaussian_filter_keeps_constants_and_smooths() -> None:
    flat = torch.full((2, 3, 8, 8), 0.3)
    assert torch.allclose(gaussian_filter(flat), flat)
    x = torch.zeros(1, 1, 8, 8)
    x[0, 0, 4, 4] = 1.0
    blurred = gaussian_filter(x, sigma=0.5)
    assert blurred[0, 0, 4, 4] < 1 and blurred[0, 0, 4, 5] > 0
    assert blurred.sum().item() == pytest.approx(1.0, abs=1e-5)


def test_diffusion_fill_recovers_a_harmonic_image() -> None:
    # A linear ramp is harmonic: the 4-neighbour average reproduces it inside any hole.
    ramp = torch.linspace(0, 1, 8).view(1, 1, 1, 8).expand(1, 1, 8, 8).contiguous()
    mask = center_block_mask(1, 8, 8, 0.5)
    filled = diffusion_fill(ramp * mask, mask)
    assert torch.allclose(filled, ramp, atol=1e-3)
    assert torch.equal(filled * mask, ramp * mask)  # observed pixels are kept


def test_mean_fill_uses_the_observed_mean() -> None:
    x = torch.tensor([[0.2, 0.4], [0.6, 0.0]]).view(1, 1, 2, 2)
    mask = torch.tensor([[1.0, 1.0], [1.0, 0.0]]).view(1, 1, 2, 2)
    assert mean_fill(x, mask)[0, 0, 1, 1].item() == pytest.approx(0.4, abs=1e-6)


def test_classical_baselines_beat_the_corrupted_input(digits_test: torch.Tensor) -> None:
    for corruption in (
        Corruption("denoise_sigma0.5", "noise", 0.5),
        Corruption("inpaint_random", "random_pixels", 0.5),
    ):
        corrupted, mask = corrupt(digits_test, corruption, seed=0)
        restored = classical_restore(corrupted, mask, corruption)
        assert restored.shape == digits_test.shape
        assert psnr(restored, digits_test).mean() > psnr(corrupted, digits_test).mean() + 0.5
