"""Per-family settings the tasks read: batch size (vae/gan.batch_size over train.batch_size) and
the VAE's mixture prior, fitted at export to the exported (best-epoch) model."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from genpipe.data.dataset import load_prepared
from genpipe.models.checkpoint import load_model
from tests.params import tiny_params
from tests.training.helpers import build_task


@pytest.mark.parametrize("family", ["vae", "gan"])
def test_family_batch_size_overrides_the_shared_one(
    family: str, digits_prepared: Path, tmp_path: Path
) -> None:
    shared = build_task(
        family, tiny_params({"train": {"batch_size": 48}}), digits_prepared, tmp_path
    )
    assert shared.batch_size == 48  # null: train.batch_size
    own = tiny_params({"train": {"batch_size": 48}, family: {"batch_size": 16}})
    assert build_task(family, own, digits_prepared, tmp_path).batch_size == 16


def test_vae_export_fits_the_mixture_prior_to_the_exported_weights(
    digits_prepared: Path, tmp_path: Path
) -> None:
    params = tiny_params({"vae": {"prior": "gmm", "prior_components": 3}})
    task = build_task("vae", params, digits_prepared, tmp_path / "work")
    best = {k: v.clone() for k, v in task.exportable().state_dict().items()}
    with torch.no_grad():  # the live weights move on after the "best epoch"
        for p in task.model.parameters():
            p.add_(0.5)
    task.export(tmp_path / "out", best, epoch=1)
    model = load_model(tmp_path / "out" / "model.pt")
    train = load_prepared(digits_prepared).train.as_float()
    mu = model.encode(train)[0]  # the exported encoder's latents
    prior = model.prior
    assert not torch.equal(prior.means, torch.zeros_like(prior.means))
    weights = prior.log_weights.exp()
    assert float(weights.sum()) == pytest.approx(1.0, abs=1e-5)
    # the mixture's mean is the mean of the latents it was fitted to (an EM fixed point)
    mixture_mean = (weights[:, None] * prior.means).sum(0)
    assert torch.allclose(mixture_mean, mu.mean(0), atol=1e-3)
    assert (tmp_path / "out" / "samples.png").exists()
