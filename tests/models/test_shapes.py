"""Every supported image size: shapes, ranges and structured outputs of the VAE and the GAN."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from genpipe.models import load_model, save_model
from genpipe.models.gan import Discriminator, Generator
from genpipe.models.vae import VAE, VAEOutput
from tests.params import section

SHAPES = [(1, 8, 8), (1, 16, 16), (1, 28, 28), (3, 32, 32)]
LIKELIHOODS = ["bernoulli", "continuous_bernoulli", "gaussian"]


CASES = [(s, "bernoulli") for s in SHAPES] + [((1, 8, 8), lik) for lik in LIKELIHOODS[1:]]


@pytest.mark.parametrize(
    ("shape", "likelihood"),
    CASES,
    ids=lambda c: "x".join(map(str, c)) if isinstance(c, tuple) else c,
)
def test_vae_structured_output(shape: tuple[int, int, int], likelihood: str) -> None:
    torch.manual_seed(0)
    vae = VAE(section("vae", latent_dim=5, base_channels=8, likelihood=likelihood), shape)
    x = torch.rand(3, *shape)
    out = vae(x, kl_weight=0.5)
    assert isinstance(out, VAEOutput)
    assert out.loss.shape == out.recon_loss.shape == out.kl.shape == ()
    assert out.recon.shape == x.shape
    assert float(out.recon.detach().min()) >= 0 and float(out.recon.detach().max()) <= 1
    assert out.z.shape == out.mu.shape == out.logvar.shape == (3, 5)
    assert float(out.kl.detach()) >= 0
    expected = out.recon_loss + vae.config.beta * 0.5 * out.kl
    assert torch.allclose(out.loss, expected)
    out.loss.backward()  # differentiable end to end
    assert all(p.grad is not None for p in vae.parameters() if p.requires_grad)
    mu, _ = vae.encode(x)
    assert vae.decode(mu).shape == x.shape
    assert vae.reconstruct(x).shape == x.shape
    assert vae.sample(4, torch.Generator().manual_seed(0)).shape == (4, *shape)


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("spectral_norm", [True, False])
def test_gan_shapes_and_ranges(shape: tuple[int, int, int], spectral_norm: bool) -> None:
    torch.manual_seed(0)
    config = section("gan", latent_dim=6, base_channels=8, spectral_norm=spectral_norm)
    g, d = Generator(config, shape), Discriminator(config, shape)
    fake = g(torch.randn(3, 6)).detach()
    assert fake.shape == (3, *shape)
    assert float(fake.min()) >= 0 and float(fake.max()) <= 1
    g.eval()
    assert torch.equal(g.decode(torch.zeros(2, 6)), g(torch.zeros(2, 6)))
    assert d(fake).shape == (3,)
    assert g.latent_dim == 6
    assert g.sample(2, torch.Generator().manual_seed(1)).shape == (2, *shape)


def test_channels_last_gives_the_same_outputs() -> None:
    """Training runs in channels_last; it must be a layout change only."""
    torch.manual_seed(0)
    vae = VAE(section("vae", base_channels=8), (1, 28, 28)).eval()
    x = torch.rand(4, 1, 28, 28)
    ref = vae.reconstruct(x)
    vae = vae.to(memory_format=torch.channels_last)
    got = vae.reconstruct(x.contiguous(memory_format=torch.channels_last))
    assert torch.allclose(ref, got, atol=1e-5)


def test_model_files_round_trip(tmp_path: Path) -> None:
    torch.manual_seed(0)
    vae = VAE(section("vae", base_channels=8, likelihood="gaussian"), (1, 8, 8)).eval()
    g = Generator(section("gan", base_channels=8), (1, 28, 28)).eval()
    save_model(tmp_path / "vae.pt", vae, "vae", {"epoch": 3})
    save_model(tmp_path / "g.pt", g, "generator")
    z = torch.randn(2, vae.latent_dim)
    assert torch.equal(load_model(tmp_path / "vae.pt").decode(z), vae.decode(z))
    zg = torch.randn(2, g.latent_dim)
    assert torch.equal(load_model(tmp_path / "g.pt")(zg), g(zg))
