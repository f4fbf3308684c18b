"""Prepared folders with stats.csv, and a helper to inject bad data as `prepare` would write it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from genpipe import io
from genpipe.data.dataset import SPLITS, load_prepared
from genpipe.data.stats import image_stats


def write_stats_csv(folder: Path) -> None:
    """stats.csv as `prepare` writes it, recomputed from whatever arrays are in `folder`."""
    data = load_prepared(folder)
    io.write_text(
        folder / "stats.csv", image_stats({s: data.split(s) for s in SPLITS}).to_csv(index=False)
    )


def replace_split(
    folder: Path, split: str, images: np.ndarray | None = None, labels: np.ndarray | None = None
) -> None:
    """Overwrite one split's arrays (meta.json untouched) and refresh stats.csv to match."""
    old = load_prepared(folder).split(split)
    images = old.images if images is None else images
    labels = old.labels if labels is None else labels
    io.write_npz(folder / f"{split}.npz", images=images, labels=labels)
    write_stats_csv(folder)


@pytest.fixture
def prepared(digits_prepared: Path) -> Path:
    """Real digits in the prepare stage's full format (arrays, meta.json and stats.csv)."""
    write_stats_csv(digits_prepared)
    return digits_prepared
