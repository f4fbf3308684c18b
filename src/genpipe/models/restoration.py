"""Restoration with a trained generative model: amortised (VAE encoder) or by latent search.

Latent search (CSGM, Bora et al. 2017; Yeh et al. 2017) minimises, per image and restart,
    ||mask * (decode(z) - y)||² + prior_weight * ||z||²
with Adam on z, all images and restarts in one batch, then keeps each image's restart with the
lowest observed-pixel error. The loss is a sum of independent per-image terms and Adam is
per-coordinate, so batching changes no result. For inpainting the observed pixels are pasted
back: a method is only asked to invent what is missing.

It lives beside the models because serving runs it too (the registry's restoration pyfunc), on
plain tensors and a config.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator

import torch
from torch import Tensor, nn

from genpipe.config.evaluate import LatentSearchConfig
from genpipe.errors import GenpipeError

log = logging.getLogger(__name__)

METHODS = ("vae_amortised", "vae_latent_search", "gan_latent_search")
METHOD_MODEL = {"vae_amortised": "vae", "vae_latent_search": "vae", "gan_latent_search": "gan"}


class RestorationError(GenpipeError):
    """A restoration request that cannot be served (unknown method, wrong model, bad shapes)."""


@contextlib.contextmanager
def frozen(model: nn.Module) -> Iterator[nn.Module]:
    """Eval mode and no weight gradients while z is optimised; the caller's flags return after."""
    flags = [p.requires_grad for p in model.parameters()]
    was_training = model.training
    model.eval().requires_grad_(False)
    try:
        yield model
    finally:
        for p, flag in zip(model.parameters(), flags, strict=True):
            p.requires_grad_(flag)
        model.train(was_training)


def latent_search(
    decode: Callable[[Tensor], Tensor],
    latent_dim: int,
    observed: Tensor,
    mask: Tensor | None,
    search: LatentSearchConfig,
    seed: int = 0,
    warm_start: Tensor | None = None,
) -> Tensor:
    """Best decode(z) per image [N, C, H, W]; `warm_start` [N, latent] replaces restart 0's init."""
    n, restarts = observed.shape[0], search.restarts
    gen = torch.Generator().manual_seed(seed)
    z0 = torch.randn(restarts, n, latent_dim, generator=gen)  # [R, N, d], CPU: device-independent
    if warm_start is not None:
        z0[0] = warm_start.detach().cpu()
    z = z0.to(observed.device).reshape(restarts * n, latent_dim).requires_grad_(True)  # [RN, d]
    target = observed.repeat(restarts, 1, 1, 1)  # [RN, C, H, W], restart-major like z
    weight = torch.ones_like(observed) if mask is None else mask.expand_as(observed).to(observed)
    weight = weight.repeat(restarts, 1, 1, 1)
    opt = torch.optim.Adam([z], lr=search.lr)
    for _ in range(search.steps):
        data_term = ((decode(z) - target).square() * weight).flatten(1).sum(1)  # [RN]
        loss = data_term + search.prior_weight * z.square().sum(1)
        opt.zero_grad(set_to_none=True)
        loss.sum().backward()  # independent terms: each z row gets its own image's gradient
        opt.step()
    with torch.no_grad():
        images = decode(z)  # [RN, C, H, W]
        error = ((images - target).square() * weight).flatten(1).sum(1)
        error = error / weight.flatten(1).sum(1).clamp_min(1)
        best = error.view(restarts, n).argmin(dim=0)  # [N]
        return images.view(restarts, n, *observed.shape[1:])[best, torch.arange(n)]


def _check(model: nn.Module, corrupted: Tensor, method: str) -> None:
    if method not in METHODS:
        raise RestorationError(
            f"unknown restoration method {method!r}; use one of {', '.join(METHODS)}"
        )
    needs_encoder = METHOD_MODEL[method] == "vae"
    if needs_encoder != hasattr(model, "encode"):
        kind = "a VAE" if needs_encoder else "a GAN generator"
        raise RestorationError(f"method {method!r} needs {kind}, got {type(model).__name__}")
    if corrupted.ndim != 4 or tuple(corrupted.shape[1:]) != tuple(model.image_shape):
        raise RestorationError(
            f"images of shape [N, {', '.join(map(str, model.image_shape))}] expected, "
            f"got {list(corrupted.shape)}"
        )


def restore(
    model: nn.Module,
    corrupted: Tensor,
    mask: Tensor | None,
    method: str,
    search: LatentSearchConfig,
    seed: int = 0,
) -> Tensor:
    """corrupted [N, C, H, W] in [0, 1], mask 1 = observed (broadcastable) -> restored in [0, 1]."""
    _check(model, corrupted, method)
    corrupted = corrupted.float()
    if mask is not None:
        mask = mask.to(corrupted)
    with frozen(model):
        if method == "vae_amortised":
            restored = model.reconstruct(corrupted)
        else:
            warm_start = None
            if method == "vae_latent_search":  # the amortised guess becomes restart 0
                with torch.no_grad():
                    warm_start = model.encode(corrupted)[0]
            restored = latent_search(
                model.decode, model.latent_dim, corrupted, mask, search, seed, warm_start
            )
    if mask is not None:
        restored = mask * corrupted + (1 - mask) * restored
    return restored.clamp(0, 1)
