"""DCGAN-style generator and discriminator that adapt to the image size, and their losses.

The losses return structured outputs (as the VAE's forward does), so the training task logs
named fields instead of a loose dict.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from genpipe.config import GANConfig
from genpipe.models.layout import channel_plan, spatial_plan


class Generator(nn.Module):
    """z [N, latent] -> image in [0, 1] [N, C, H, W]."""

    def __init__(self, config: GANConfig, image_shape: tuple[int, int, int]) -> None:
        super().__init__()
        self.config = config
        self.image_shape = tuple(image_shape)
        self.latent_dim = config.latent_dim
        c, h, _ = self.image_shape
        sizes = spatial_plan(h)
        chans = channel_plan(config.base_channels, len(sizes))
        self._top_shape = (chans[-1], sizes[-1], sizes[-1])
        self.project = nn.Sequential(
            nn.Linear(config.latent_dim, chans[-1] * sizes[-1] ** 2, bias=False),
            nn.Unflatten(1, self._top_shape),
            nn.BatchNorm2d(chans[-1]),
            nn.ReLU(inplace=True),
        )
        blocks: list[nn.Module] = []
        for i in range(len(sizes) - 1, 0, -1):
            blocks += [
                nn.Upsample(size=sizes[i - 1], mode="nearest"),
                nn.Conv2d(chans[i], chans[i - 1], 3, padding=1, bias=False),
                nn.BatchNorm2d(chans[i - 1]),
                nn.ReLU(inplace=True),
            ]
        blocks += [nn.Conv2d(chans[0], c, 3, padding=1), nn.Tanh()]
        self.body = nn.Sequential(*blocks)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return (self.body(self.project(z)) + 1) / 2  # tanh -> [0, 1]

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Same as forward: lets restoration treat the VAE decoder and G alike."""
        return self(z)

    def sample_latent(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n latents from N(0, I), on the generator's device (else the model's)."""
        device = generator.device if generator is not None else next(self.parameters()).device
        return torch.randn(n, self.latent_dim, generator=generator, device=device)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        return self(self.sample_latent(n, generator).to(next(self.parameters()).device))


class Discriminator(nn.Module):
    """image in [0, 1] -> one real/fake logit per image, [N]."""

    def __init__(self, config: GANConfig, image_shape: tuple[int, int, int]) -> None:
        super().__init__()
        c, h, _ = image_shape
        sizes = spatial_plan(h)
        chans = channel_plan(config.base_channels, len(sizes))
        norm = spectral_norm if config.spectral_norm else (lambda m: m)
        layers: list[nn.Module] = [
            norm(nn.Conv2d(c, chans[0], 3, padding=1)),
            nn.LeakyReLU(0.2, inplace=True),
        ]
        for i in range(1, len(sizes)):
            layers += [
                norm(nn.Conv2d(chans[i - 1], chans[i], 3, stride=2, padding=1)),
                nn.LeakyReLU(0.2, inplace=True),
            ]
        layers += [nn.Flatten(), norm(nn.Linear(chans[-1] * sizes[-1] ** 2, 1))]
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x * 2 - 1).squeeze(1)


@dataclass
class DiscriminatorOutput:
    loss: torch.Tensor  # scalar: hinge or non-saturating loss on real vs fake logits
    d_real: torch.Tensor  # scalar: mean logit on real images
    d_fake: torch.Tensor  # scalar: mean logit on fake images


@dataclass
class GeneratorOutput:
    loss: torch.Tensor  # scalar: the generator's adversarial loss


def discriminator_loss(kind: str, real: torch.Tensor, fake: torch.Tensor) -> DiscriminatorOutput:
    """real, fake: D's logits [B] on real and generated images."""
    if kind == "hinge":
        loss = F.relu(1 - real).mean() + F.relu(1 + fake).mean()
    else:  # non-saturating BCE
        loss = F.softplus(-real).mean() + F.softplus(fake).mean()
    return DiscriminatorOutput(loss, real.detach().float().mean(), fake.detach().float().mean())


def generator_loss(kind: str, fake: torch.Tensor) -> GeneratorOutput:
    """fake: D's logits [B] on generated images."""
    return GeneratorOutput(-fake.mean() if kind == "hinge" else F.softplus(-fake).mean())
