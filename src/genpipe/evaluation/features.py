"""Batched passes of images through the evaluator classifier: features and class probabilities.

Both come from one forward pass (features -> head), so a set of images is embedded once for FD,
KID and PRDC (features) and for the classifier metrics (probabilities).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from genpipe.models.classifier import Classifier


@dataclass(frozen=True)
class Embedded:
    features: Tensor  # [N, feature_dim], float32 on CPU
    probs: Tensor  # [N, n_classes], softmax

    def __len__(self) -> int:
        return self.features.shape[0]


@torch.no_grad()
def embed(classifier: Classifier, images: Tensor, batch_size: int = 1024) -> Embedded:
    """images [N, C, H, W] in [0, 1] -> features and probabilities, in eval mode."""
    classifier.eval()
    device = next(classifier.parameters()).device
    feats, probs = [], []
    for i in range(0, images.shape[0], batch_size):
        f = classifier.features(images[i : i + batch_size].to(device).float())  # [B, D]
        feats.append(f.cpu())
        probs.append(torch.softmax(classifier.head(f).double(), dim=1).float().cpu())  # [B, K]
    return Embedded(torch.cat(feats), torch.cat(probs))


Sampler = Callable[[int, torch.Generator], Tensor]
"""(n, generator) -> n images [n, C, H, W] in [0, 1]: a generative model or a real pool."""


def model_sampler(model: torch.nn.Module, batch_size: int = 1024) -> Sampler:
    """Sample from a VAE or generator in batches; latents come from the CPU generator passed in."""

    @torch.no_grad()
    def sample(n: int, generator: torch.Generator) -> Tensor:
        model.eval()
        device = next(model.parameters()).device
        out = []
        for i in range(0, n, batch_size):
            z = model.sample_latent(min(batch_size, n - i), generator)  # the model's prior
            out.append(model.decode(z.to(device)).cpu())
        return torch.cat(out)

    return sample


def pool_sampler(images: Tensor) -> Sampler:
    """Draw n distinct images from a fixed pool (the real-vs-real floor draws from train)."""

    def sample(n: int, generator: torch.Generator) -> Tensor:
        if n > images.shape[0]:
            raise ValueError(f"cannot draw {n} distinct images from a pool of {images.shape[0]}")
        return images[torch.randperm(images.shape[0], generator=generator)[:n]]

    return sample
