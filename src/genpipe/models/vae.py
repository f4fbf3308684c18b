"""Convolutional VAE with a choice of likelihood (pythae-style structured output)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from genpipe.config import VAEConfig
from genpipe.models.latent_prior import GaussianMixturePrior
from genpipe.models.layout import channel_plan, spatial_plan


@dataclass
class VAEOutput:
    loss: torch.Tensor  # scalar: recon_loss + beta * kl_weight * kl, per image
    recon_loss: torch.Tensor  # scalar: -log p(x|z) per image
    kl: torch.Tensor  # scalar: KL(q(z|x) || N(0, I)) per image
    recon: torch.Tensor  # [N, C, H, W] mean of p(x|z), in [0, 1]
    z: torch.Tensor  # [N, latent]
    mu: torch.Tensor  # [N, latent]
    logvar: torch.Tensor  # [N, latent]


class VAE(nn.Module):
    def __init__(self, config: VAEConfig, image_shape: tuple[int, int, int]) -> None:
        super().__init__()
        self.config = config
        self.image_shape = tuple(image_shape)
        self.latent_dim = config.latent_dim
        c, h, w = self.image_shape
        if h != w:
            raise ValueError(f"square images expected, got {h}x{w}")
        self.sizes = spatial_plan(h)  # e.g. [28, 14, 7, 4]
        chans = channel_plan(config.base_channels, len(self.sizes))

        enc: list[nn.Module] = [nn.Conv2d(c, chans[0], 3, padding=1), nn.SiLU()]
        for i in range(1, len(self.sizes)):  # each step: stride-2 to sizes[i]
            enc += [nn.Conv2d(chans[i - 1], chans[i], 3, stride=2, padding=1), nn.SiLU()]
        self.encoder = nn.Sequential(*enc, nn.Flatten())
        top = chans[-1] * self.sizes[-1] ** 2
        self.to_stats = nn.Linear(top, 2 * config.latent_dim)

        self.from_latent = nn.Linear(config.latent_dim, top)
        self._top_shape = (chans[-1], self.sizes[-1], self.sizes[-1])
        dec: list[nn.Module] = []
        for i in range(len(self.sizes) - 1, 0, -1):  # upsample to the exact size of each level
            dec += [
                nn.Upsample(size=self.sizes[i - 1], mode="nearest"),
                nn.Conv2d(chans[i], chans[i - 1], 3, padding=1),
                nn.SiLU(),
            ]
        dec.append(nn.Conv2d(chans[0], c, 3, padding=1))  # logits / means
        self.decoder = nn.Sequential(*dec)
        # Gaussian likelihood: one learned global scale (sigma-VAE), log sigma.
        self.log_sigma = nn.Parameter(torch.zeros(())) if config.likelihood == "gaussian" else None
        # Sampling prior: N(0, I), or a mixture fitted to the training latents after training.
        self.prior = (
            GaussianMixturePrior(config.prior_components, config.latent_dim)
            if config.prior == "gmm"
            else None
        )

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x in [0, 1] [N, C, H, W] -> (mu, logvar), each [N, latent]."""
        mu, logvar = self.to_stats(self.encoder(x * 2 - 1)).chunk(2, dim=1)
        return mu, logvar.clamp(-12.0, 8.0)

    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:
        h = self.from_latent(z).view(z.shape[0], *self._top_shape)  # [N, C_top, s, s]
        return self.decoder(F.silu(h))  # [N, C, H, W]

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """z [N, latent] -> mean image in [0, 1]."""
        return self.mean_image(self.decode_logits(z))

    def mean_image(self, logits: torch.Tensor) -> torch.Tensor:
        if self.config.likelihood == "continuous_bernoulli":
            return torch.distributions.ContinuousBernoulli(logits=logits.float()).mean
        return torch.sigmoid(logits)

    def recon_nll(self, logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """-log p(x|z) summed over pixels, [N]."""
        if self.config.likelihood == "bernoulli":
            nll = F.binary_cross_entropy_with_logits(logits, x, reduction="none")
        elif self.config.likelihood == "continuous_bernoulli":
            dist = torch.distributions.ContinuousBernoulli(logits=logits.float())
            nll = -dist.log_prob(x.float())
        else:
            assert self.log_sigma is not None
            mean = torch.sigmoid(logits)
            nll = (
                0.5 * ((x - mean) / self.log_sigma.exp()) ** 2
                + self.log_sigma
                + 0.5 * math.log(2 * math.pi)
            )
        return nll.flatten(1).sum(1)

    def forward(
        self, x: torch.Tensor, kl_weight: float = 1.0, eps: torch.Tensor | None = None
    ) -> VAEOutput:
        """`eps` [N, latent] is the reparameterisation noise (drawn here when not given)."""
        mu, logvar = self.encode(x)
        eps = torch.randn_like(mu) if eps is None else eps
        z = mu + eps * (0.5 * logvar).exp()  # reparameterisation
        logits = self.decode_logits(z)
        recon_loss = self.recon_nll(logits, x).mean()
        kl = (-0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(1)).mean()
        loss = recon_loss + self.config.beta * kl_weight * kl
        return VAEOutput(loss, recon_loss, kl, self.mean_image(logits), z, mu, logvar)

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Amortised restoration: decode the posterior mean."""
        mu, _ = self.encode(x)
        return self.decode(mu)

    @torch.no_grad()
    def fit_prior(self, images: torch.Tensor, seed: int, batch_size: int = 1024) -> None:
        """Fit the mixture prior to the posterior means of `images` (no-op for N(0, I))."""
        if self.prior is None:
            return
        was_training = self.training
        self.eval()
        mu = torch.cat([self.encode(chunk)[0] for chunk in images.split(batch_size)])  # [N, d]
        self.train(was_training)
        self.prior.fit(mu.float(), seed)

    def sample_latent(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n latents [n, d] from the sampling prior, on the generator's device (else the model's)."""
        device = self.from_latent.weight.device
        if self.prior is not None:
            return self.prior.sample(n, generator, device)
        device = generator.device if generator is not None else device
        return torch.randn(n, self.latent_dim, generator=generator, device=device)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        z = self.sample_latent(n, generator)
        return self.decode(z.to(self.from_latent.weight.device))
