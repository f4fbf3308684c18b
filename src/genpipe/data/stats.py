"""Per-image statistics: the table `prepare` writes as stats.csv and `validate` recomputes.

Vectorised over the whole split (one reshape, then numpy reductions), never a loop over images.
NaN is deliberately propagated (min/max/mean of an image with a NaN are NaN):
the validation suite must be able to see it rather than have it silently skipped.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

import numpy as np
import pandas as pd

from genpipe.data.dataset import Split

COLUMNS = (
    "split",
    "index",
    "label",
    "height",
    "width",
    "channels",
    "min",
    "max",
    "mean",
    "std",
    "hash",
)


def image_hashes(images: np.ndarray) -> list[str]:
    """sha256 hex of each image's raw bytes (C order), so identical pixels give identical hashes."""
    flat = np.ascontiguousarray(images).reshape(len(images), -1)
    return [hashlib.sha256(row.tobytes()).hexdigest() for row in flat]


def split_stats(name: str, split: Split) -> pd.DataFrame:
    """One row per image of one split; images are [N, C, H, W] (3-D [N, H, W] counts as C=1)."""
    images = np.asarray(split.images)
    if images.ndim == 3:
        images = images[:, None]
    if images.ndim != 4:
        raise ValueError(f"split {name!r}: images must be [N, C, H, W], got shape {images.shape}")
    n, channels, height, width = images.shape
    labels = np.asarray(split.labels).reshape(-1)
    if len(labels) != n:
        raise ValueError(f"split {name!r}: {n} images but {len(labels)} labels")
    flat = images.reshape(n, -1).astype(np.float64, copy=False)  # [N, C*H*W]
    empty = flat.shape[1] == 0
    with np.errstate(invalid="ignore"):
        frame = pd.DataFrame(
            {
                "split": name,
                "index": np.arange(n, dtype=np.int64),
                "label": labels.astype(np.int64, copy=False),
                "height": np.full(n, height, dtype=np.int64),
                "width": np.full(n, width, dtype=np.int64),
                "channels": np.full(n, channels, dtype=np.int64),
                "min": np.full(n, np.nan) if empty else flat.min(axis=1),
                "max": np.full(n, np.nan) if empty else flat.max(axis=1),
                "mean": np.full(n, np.nan) if empty else flat.mean(axis=1),
                "std": np.full(n, np.nan) if empty else flat.std(axis=1),
                "hash": image_hashes(images),
            },
            columns=list(COLUMNS),
        )
    return frame


def image_stats(splits: Mapping[str, Split]) -> pd.DataFrame:
    """The stats table for all splits, in the given split order, one row per image."""
    frames = [split_stats(name, split) for name, split in splits.items()]
    if not frames:
        return pd.DataFrame({c: [] for c in COLUMNS})
    return pd.concat(frames, ignore_index=True)
