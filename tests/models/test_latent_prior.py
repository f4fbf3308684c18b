"""The ex-post mixture prior: fits clustered latents, samples reproducibly, travels with the VAE."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from genpipe.evaluation.features import model_sampler
from genpipe.models.checkpoint import load_model, save_model
from genpipe.models.latent_prior import GaussianMixturePrior
from genpipe.models.vae import VAE
from tests.params import section

CENTRES = torch.tensor([[-5.0, 0.0, 0.0], [5.0, 2.0, 0.0]])  # [2, 3]


def _two_clusters(n: int = 400) -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    return CENTRES[torch.arange(n) % 2] + 0.1 * torch.randn(n, 3, generator=gen)  # [n, 3]


def test_mixture_fits_clusters_and_samples_from_them() -> None:
    prior = GaussianMixturePrior(components=2, dim=3)
    prior.fit(_two_clusters(), seed=0)
    z = prior.sample(1000, torch.Generator().manual_seed(1), torch.device("cpu"))  # [1000, 3]
    assert bool((torch.cdist(z, CENTRES).min(1).values < 1.0).all())  # none between the clusters
    share = float((z[:, 0] > 0).double().mean())
    assert 0.4 < share < 0.6  # both clusters, in proportion
    again = prior.sample(1000, torch.Generator().manual_seed(1), torch.device("cpu"))
    assert torch.equal(z, again)


def test_unfitted_mixture_is_the_standard_normal_and_too_few_latents_fail() -> None:
    z = GaussianMixturePrior(3, 4).sample(4000, torch.Generator().manual_seed(2), "cpu")
    assert z.mean(0).abs().max() < 0.1 and (z.std(0) - 1).abs().max() < 0.1
    with pytest.raises(ValueError, match=r"cannot fit 3 .*vae\.prior_components"):
        GaussianMixturePrior(3, 4).fit(torch.randn(2, 4), seed=0)


def test_vae_gmm_prior_is_fitted_saved_and_used_by_every_sampler(tmp_path: Path) -> None:
    torch.manual_seed(0)
    config = section("vae", latent_dim=3, base_channels=4, prior="gmm", prior_components=2)
    vae = VAE(config, (1, 8, 8)).eval()
    images = torch.rand(64, 1, 8, 8, generator=torch.Generator().manual_seed(3))
    vae.fit_prior(images, seed=0)
    assert not torch.equal(vae.prior.means, torch.zeros(2, 3))
    save_model(tmp_path / "vae.pt", vae, "vae")
    loaded = load_model(tmp_path / "vae.pt")
    assert torch.equal(loaded.prior.means, vae.prior.means)
    a = vae.sample(8, torch.Generator().manual_seed(4))
    assert torch.equal(a, loaded.sample(8, torch.Generator().manual_seed(4)))
    # evaluation's sampler draws from the same prior, so it scores what serving returns
    assert torch.equal(model_sampler(loaded)(8, torch.Generator().manual_seed(4)), a)
    z = vae.sample_latent(500, torch.Generator().manual_seed(5))
    mu = vae.encode(images)[0]
    assert torch.cdist(z.mean(0, keepdim=True), mu.mean(0, keepdim=True)).item() < 0.5


def test_standard_prior_samples_n01_and_ignores_the_fit() -> None:
    vae = VAE(section("vae", latent_dim=3, base_channels=4, prior="standard"), (1, 8, 8))
    assert vae.prior is None
    vae.fit_prior(torch.rand(8, 1, 8, 8), seed=0)  # a no-op for N(0, I)
    z = vae.sample_latent(6, torch.Generator().manual_seed(7))
    assert torch.equal(z, torch.randn(6, 3, generator=torch.Generator().manual_seed(7)))
