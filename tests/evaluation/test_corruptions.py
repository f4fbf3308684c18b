from __future__ import annotations

import pytest
import torch

from genpipe.evaluation.corruptions import (
    Corruption,
    center_block_mask,
    corrupt,
    corruptions_from_config,
)
from tests.params import section


def test_names_follow_the_protocol() -> None:
    config = section("evaluate", noise_sigmas=[0.1, 0.3, 0.5])
    names = [c.name for c in corruptions_from_config(config)]
    assert names == [
        "denoise_sigma0.1",
        "denoise_sigma0.3",
        "denoise_sigma0.5",
        "inpaint_center",
        "inpaint_random",
    ]


@pytest.mark.parametrize("name", ["denoise_sigma0.3", "inpaint_center", "inpaint_random"])
def test_corruptions_are_deterministic_per_seed(digits_test: torch.Tensor, name: str) -> None:
    corruption = {c.name: c for c in corruptions_from_config(section("evaluate"))}[name]
    a, mask_a = corrupt(digits_test, corruption, seed=0)
    b, mask_b = corrupt(digits_test, corruption, seed=0)
    c, _ = corrupt(digits_test, corruption, seed=1)
    assert torch.equal(a, b)
    assert (mask_a is None) == (mask_b is None)
    assert a.min() >= 0 and a.max() <= 1
    if name != "inpaint_center":  # the centre block is the same for every seed, by design
        assert not torch.equal(a, c)


def test_noise_has_the_requested_sigma() -> None:
    clean = torch.full((200, 1, 8, 8), 0.5)  # mid-grey: clamping to [0, 1] is rare at sigma 0.1
    noisy, mask = corrupt(clean, Corruption("denoise_sigma0.1", "noise", 0.1), seed=3)
    assert mask is None
    assert (noisy - clean).std().item() == pytest.approx(0.1, rel=0.05)


def test_center_block_removes_the_middle() -> None:
    mask = center_block_mask(2, 8, 8, 0.5)
    assert mask.shape == (2, 1, 8, 8)
    assert mask[:, :, 2:6, 2:6].sum() == 0
    assert mask.sum() == 2 * (64 - 16)


def test_random_pixels_miss_the_requested_fraction(digits_test: torch.Tensor) -> None:
    corrupted, mask = corrupt(digits_test, Corruption("inpaint_random", "random_pixels", 0.5), 0)
    assert mask is not None and mask.shape == (len(digits_test), 1, 8, 8)
    assert torch.all(mask.flatten(1).sum(1) == 32)  # exactly half of 64 pixels, every image
    assert torch.equal(corrupted * (1 - mask), torch.zeros_like(corrupted))  # missing set to 0
    assert torch.equal(corrupted * mask, digits_test * mask)  # observed pixels untouched
    assert not torch.equal(mask[0], mask[1])  # a fresh pattern per image
