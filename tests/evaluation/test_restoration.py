from __future__ import annotations

import pytest
import torch

from genpipe.config.evaluate import LatentSearchConfig
from genpipe.evaluation.corruptions import Corruption, corrupt
from genpipe.models.restoration import RestorationError, latent_search, restore

SEARCH = LatentSearchConfig(steps=10, restarts=2, lr=0.1, prior_weight=1e-3)


def observed_error(x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    w = torch.ones_like(y) if mask is None else mask.expand_as(y)
    return ((x - y).square() * w).flatten(1).sum(1) / w.flatten(1).sum(1)


@pytest.mark.parametrize(
    ("method", "model"),
    [
        ("vae_amortised", "tiny_vae"),
        ("vae_latent_search", "tiny_vae"),
        ("gan_latent_search", "tiny_generator"),
    ],
)
def test_every_method_restores_inpainting_in_range(
    request: pytest.FixtureRequest, digits_test: torch.Tensor, method: str, model: str
) -> None:
    net = request.getfixturevalue(model)
    clean = digits_test[:4]
    corrupted, mask = corrupt(clean, Corruption("inpaint_center", "center_block", 0.5), seed=0)
    restored = restore(net, corrupted, mask, method, SEARCH, seed=0)
    assert restored.shape == clean.shape
    assert restored.min() >= 0 and restored.max() <= 1
    assert torch.equal(restored * mask, corrupted * mask)  # observed pixels are pasted back
    again = restore(net, corrupted, mask, method, SEARCH, seed=0)
    assert torch.allclose(restored, again, atol=1e-6)  # deterministic for a seed


def test_gan_latent_search_recovers_an_image_in_the_range(tiny_generator) -> None:
    # A target the generator can produce exactly: the search must get close to it.
    with torch.no_grad():
        target = tiny_generator(torch.randn(3, 4, generator=torch.Generator().manual_seed(5)))
    search = LatentSearchConfig(steps=60, restarts=3, lr=0.1, prior_weight=0.0)
    restored = restore(tiny_generator, target, None, "gan_latent_search", search, seed=1)
    start = latent_search(
        tiny_generator.decode, 4, target, None, search.model_copy(update={"steps": 1}), seed=1
    )
    assert (
        observed_error(restored, target, None).max()
        < 0.2 * observed_error(start, target, None).min()
    )


def test_latent_search_improves_on_the_vae_encoder_guess(tiny_vae, digits_test) -> None:
    clean = digits_test[:4]
    noisy, _ = corrupt(clean, Corruption("denoise_sigma0.1", "noise", 0.1), seed=0)
    amortised = restore(tiny_vae, noisy, None, "vae_amortised", SEARCH)
    searched = restore(tiny_vae, noisy, None, "vae_latent_search", SEARCH)
    # Restart 0 starts at the encoder mean, so the best restart can only fit the input better.
    assert torch.all(
        observed_error(searched, noisy, None) <= observed_error(amortised, noisy, None) + 1e-6
    )


def test_batching_does_not_change_results(tiny_generator, digits_test) -> None:
    images = digits_test[:4]
    both = latent_search(tiny_generator.decode, 4, images, None, SEARCH, seed=0)
    # Images 0..3 alone, with the same initial latents, must give the same restorations.
    gen = torch.Generator().manual_seed(0)
    z0 = torch.randn(SEARCH.restarts, 4, 4, generator=gen)
    single = latent_search(
        tiny_generator.decode,
        4,
        images[:1],
        None,
        SEARCH.model_copy(update={"restarts": 1}),
        seed=0,
        warm_start=z0[0, :1],
    )
    first_restart = latent_search(
        tiny_generator.decode, 4, images, None, SEARCH.model_copy(update={"restarts": 1}), seed=0
    )
    assert torch.allclose(single[0], first_restart[0], atol=1e-5)
    assert both.shape == images.shape


def test_weights_stay_untouched_and_trainable(tiny_generator, digits_test) -> None:
    before = {k: v.clone() for k, v in tiny_generator.state_dict().items()}
    tiny_generator.train()
    restore(tiny_generator, digits_test[:2], None, "gan_latent_search", SEARCH)
    assert all(torch.equal(before[k], v) for k, v in tiny_generator.state_dict().items())
    assert all(p.requires_grad and p.grad is None for p in tiny_generator.parameters())
    assert tiny_generator.training  # the caller's mode is restored


def test_bad_requests_fail_clearly(tiny_vae, tiny_generator, digits_test) -> None:
    with pytest.raises(RestorationError, match="unknown restoration method"):
        restore(tiny_vae, digits_test[:2], None, "magic", SEARCH)
    with pytest.raises(RestorationError, match="needs a VAE"):
        restore(tiny_generator, digits_test[:2], None, "vae_amortised", SEARCH)
    with pytest.raises(RestorationError, match="needs a GAN generator"):
        restore(tiny_vae, digits_test[:2], None, "gan_latent_search", SEARCH)
    with pytest.raises(RestorationError, match="images of shape"):
        restore(tiny_vae, torch.zeros(2, 1, 16, 16), None, "vae_amortised", SEARCH)
