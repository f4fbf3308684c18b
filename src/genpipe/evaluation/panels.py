"""Restoration panels carry their row names: clean, corrupted, then one row per method.

The grid itself is drawn elsewhere (any grid of equally tall rows); this adds a left margin with
each row's name, so a panel read on its own (in MLflow, in the docs) says which row is which.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from genpipe import io

# names the report uses for panel rows -> what a reader sees
ROW_NAMES = {
    "clean": "clean",
    "corrupted": "corrupted",
    "classical": "classical",
    "vae_amortised": "VAE amortised",
    "vae_latent_search": "VAE latent search",
    "gan_latent_search": "GAN inversion",
}


def row_name(key: str) -> str:
    return ROW_NAMES.get(key, key.replace("_", " "))


def label_rows(image: Image.Image, names: Sequence[str]) -> Image.Image:
    """An image of len(names) equally tall rows -> the same with the names in a left margin."""
    width, height = image.size
    row_height = height / len(names)
    font = ImageFont.load_default(size=max(9, min(14, round(row_height * 0.4))))
    gap = 6
    margin = gap * 2 + max(round(font.getlength(name)) for name in names)
    white, black = (255, 0) if image.mode == "L" else ((255,) * 3, (0,) * 3)
    out = Image.new(image.mode, (margin + width, height), white)
    out.paste(image, (margin, 0))
    draw = ImageDraw.Draw(out)
    for i, name in enumerate(names):
        draw.text((margin - gap, (i + 0.5) * row_height), name, fill=black, font=font, anchor="rm")
    return out


def label_panel(path: str | Path, keys: Sequence[str]) -> None:
    """Rewrite the panel PNG at `path` with its rows named (keys as in report.protocol.panel_rows)."""
    with Image.open(path) as panel:
        labelled = label_rows(panel.copy(), [row_name(k) for k in keys])
    with io.atomic_path(path) as tmp:
        labelled.save(tmp, format="PNG")
