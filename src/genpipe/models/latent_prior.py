"""An ex-post Gaussian-mixture prior over a VAE's latent space (Ghosh et al. 2020).

A VAE trained against N(0, I) leaves holes: regions the prior samples often but no training
image encodes to. They decode to blends of digits that no classifier (or reader) recognises.
After training, a mixture of K full-covariance Gaussians is fitted to the posterior means of
the training images, and new images are decoded from samples of that mixture. The encoder and
decoder are unchanged, so reconstruction and restoration are unchanged; only sampling moves.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class GaussianMixturePrior(nn.Module):
    """K full-covariance Gaussians in d dimensions, held as buffers (saved with the model).

    Before `fit` every component is N(0, I), so an unfitted prior samples the standard normal.
    """

    def __init__(self, components: int, dim: int) -> None:
        super().__init__()
        self.register_buffer("log_weights", torch.zeros(components))  # [K]
        self.register_buffer("means", torch.zeros(components, dim))  # [K, d]
        self.register_buffer("scale_tril", torch.eye(dim).repeat(components, 1, 1))  # [K, d, d]

    def sample(self, n: int, generator: torch.Generator | None, device: torch.device) -> Tensor:
        """n latents [n, d] on `device`: the generator's device when one is given."""
        device = generator.device if generator is not None else device
        probs = self.log_weights.to(device).softmax(0)
        comp = torch.multinomial(probs, n, replacement=True, generator=generator)  # [n]
        eps = torch.randn(n, self.means.shape[1], 1, generator=generator, device=device)
        means, tril = self.means.to(device), self.scale_tril.to(device)
        return means[comp] + (tril[comp] @ eps).squeeze(-1)  # [n, d]

    @torch.no_grad()
    def fit(self, z: Tensor, seed: int) -> None:
        """Maximum-likelihood mixture of the latents z [N, d] (EM from a k-means start)."""
        from sklearn.mixture import GaussianMixture

        k = self.log_weights.shape[0]
        if z.shape[0] < k:
            raise ValueError(
                f"cannot fit {k} mixture components to {z.shape[0]} latents; "
                "lower vae.prior_components"
            )
        gmm = GaussianMixture(k, covariance_type="full", random_state=seed, max_iter=200)
        gmm.fit(z.detach().double().cpu().numpy())

        def buffer(values, like: Tensor) -> Tensor:
            return torch.as_tensor(values).to(like)

        self.log_weights.copy_(buffer(gmm.weights_, self.log_weights).log())
        self.means.copy_(buffer(gmm.means_, self.means))
        self.scale_tril.copy_(torch.linalg.cholesky(buffer(gmm.covariances_, self.scale_tril)))
