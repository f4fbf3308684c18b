"""The per-image statistics table: values against a per-image loop, NaN visibility, hashes."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from genpipe.data.dataset import Split
from genpipe.data.stats import COLUMNS, image_stats


def test_matches_per_image_reference(digits_splits: dict) -> None:
    table = image_stats(digits_splits)
    assert list(table.columns) == list(COLUMNS)
    assert len(table) == sum(len(s) for s in digits_splits.values())
    assert list(table["split"].unique()) == ["train", "val", "test"]
    val = table[table["split"] == "val"].reset_index(drop=True)
    split = digits_splits["val"]
    for i in (0, 7, len(split) - 1):
        img = split.images[i]
        row = val.loc[i]
        assert row["index"] == i and row["label"] == split.labels[i]
        assert (row["channels"], row["height"], row["width"]) == img.shape
        assert row["min"] == img.min() and row["max"] == img.max()
        assert row["mean"] == pytest.approx(img.astype(np.float64).mean())
        assert row["std"] == pytest.approx(img.astype(np.float64).std())
        assert row["hash"] == hashlib.sha256(img.tobytes()).hexdigest()


def test_nan_propagates_and_duplicates_share_a_hash() -> None:
    images = np.zeros((3, 1, 4, 4), dtype=np.float32)
    images[1, 0, 2, 3] = np.nan
    images[2] = 0.0  # identical to image 0
    table = image_stats({"train": Split(images, np.array([0, 1, 2]))})
    assert table.loc[1, ["min", "max", "mean", "std"]].isna().all()
    assert table.loc[0, ["min", "max", "mean"]].notna().all()
    assert table.loc[0, "hash"] == table.loc[2, "hash"] != table.loc[1, "hash"]


def test_three_d_arrays_count_as_one_channel_and_mismatch_is_an_error() -> None:
    table = image_stats({"test": Split(np.full((2, 5, 6), 9, dtype=np.uint8), np.array([1, 2]))})
    assert table[["channels", "height", "width"]].drop_duplicates().values.tolist() == [[1, 5, 6]]
    with pytest.raises(ValueError, match="3 images but 2 labels"):
        image_stats({"x": Split(np.zeros((3, 1, 2, 2), np.uint8), np.array([0, 1]))})


def test_per_image_means_on_ten_thousand_images() -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(10_000, 1, 28, 28), dtype=np.uint8)
    table = image_stats({"train": Split(images, np.zeros(10_000, dtype=np.int64))})
    assert table["mean"].to_numpy() == pytest.approx(images.reshape(10_000, -1).mean(axis=1))
