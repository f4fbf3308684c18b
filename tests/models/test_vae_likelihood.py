"""The Gaussian (optimal sigma-VAE) likelihood: its scale, its mean and why it cannot saturate."""

from __future__ import annotations

import math

import torch

from genpipe.config import VAEConfig
from genpipe.models.vae import VAE

SHAPE = (1, 8, 8)
D = 64


def _vae() -> VAE:
    torch.manual_seed(0)
    return VAE(VAEConfig(latent_dim=4, base_channels=8, likelihood="gaussian"), SHAPE)


def test_training_scale_is_the_batch_mse_and_the_nll_is_at_its_optimum() -> None:
    vae = _vae().train()
    x = torch.rand(6, *SHAPE)
    logits = torch.randn(6, *SHAPE) * 0.3 + 0.5
    nll = vae.recon_nll(logits, x)
    mse = float(((x - logits) ** 2).mean())
    assert math.isclose(float(vae.log_sigma), 0.5 * math.log(mse), rel_tol=1e-5)
    # at sigma^2 = MSE the squared-error term sums to D/2 over the batch mean
    expected = D * (0.5 + 0.5 * math.log(mse) + 0.5 * math.log(2 * math.pi))
    assert math.isclose(float(nll.mean()), expected, rel_tol=1e-5)


def test_evaluation_uses_the_stored_scale_and_leaves_it_alone() -> None:
    vae = _vae().train()
    vae.recon_nll(torch.full((2, *SHAPE), 0.5), torch.rand(2, *SHAPE))
    stored = float(vae.log_sigma)
    vae.eval()
    x, logits = torch.rand(2, *SHAPE), torch.rand(2, *SHAPE)
    nll = vae.recon_nll(logits, x)
    assert float(vae.log_sigma) == stored
    sigma2 = math.exp(2 * stored)
    by_hand = (0.5 * (x - logits) ** 2 / sigma2 + stored + 0.5 * math.log(2 * math.pi)).sum(
        (1, 2, 3)
    )
    assert torch.allclose(nll, by_hand, rtol=1e-5)


def test_the_scale_is_saved_with_the_weights() -> None:
    vae = _vae().train()
    vae.recon_nll(torch.zeros(2, *SHAPE), torch.rand(2, *SHAPE))
    restored = _vae()
    restored.load_state_dict(vae.state_dict())
    assert float(restored.log_sigma) == float(vae.log_sigma) != 0.0


def test_black_pixels_do_not_push_the_mean_into_saturation() -> None:
    """A mean already below a black pixel's 0 is pulled back up, not pushed further down.

    With a sigmoid mean the gradient there points further down and vanishes; on 28x28 MNIST
    (80% black) the decoder then output all-black images and the posterior collapsed.
    """
    vae = _vae().train()
    logits = torch.full((1, *SHAPE), -0.5, requires_grad=True)
    vae.recon_nll(logits, torch.zeros(1, *SHAPE)).sum().backward()
    assert logits.grad is not None and bool((logits.grad < 0).all())  # descent raises the mean


def test_decoded_images_are_clamped_but_keep_a_gradient() -> None:
    vae = _vae().eval()
    logits = torch.tensor([-0.4, 0.3, 1.7]).view(1, 1, 1, 3).requires_grad_()
    image = vae.mean_image(logits)
    assert image.detach().flatten().tolist() == [0.0, 0.30000001192092896, 1.0]
    image.sum().backward()
    assert logits.grad is not None and logits.grad.flatten().tolist() == [1.0, 1.0, 1.0]
