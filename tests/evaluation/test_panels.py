"""Restoration panels name their rows in a left margin, on top of whatever drew the grid."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from genpipe.evaluation.panels import label_panel, row_name
from genpipe.grids import save_rows

KEYS = ["clean", "corrupted", "classical", "vae_latent_search", "gan_latent_search"]


def test_a_panel_gets_a_named_margin_and_keeps_its_images(tmp_path: Path) -> None:
    rows = [torch.rand(4, 1, 8, 8) for _ in KEYS]
    path = tmp_path / "denoise_sigma0.3.png"
    save_rows(path, rows)
    grid = np.asarray(Image.open(path))
    label_panel(path, KEYS)
    labelled = np.asarray(Image.open(path))
    margin = labelled.shape[1] - grid.shape[1]
    assert labelled.shape[0] == grid.shape[0] and margin > 40
    np.testing.assert_array_equal(labelled[:, margin:], grid)  # the images are untouched
    band = labelled.shape[0] / len(KEYS)
    for i in range(len(KEYS)):  # every row's band of the margin has text in it
        assert (labelled[round(i * band) : round((i + 1) * band), :margin] < 128).any()


def test_row_names_read_as_the_docs_name_the_methods() -> None:
    assert [row_name(k) for k in KEYS[3:]] == ["VAE latent search", "GAN inversion"]
    assert row_name("vae_amortised") == "VAE amortised"
    assert row_name("new_method") == "new method"
