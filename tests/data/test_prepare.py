"""The digits source and the stratified, seeded split written by `prepare`."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from genpipe.config.data import SplitFractions
from genpipe.data.dataset import load_prepared
from genpipe.data.prepare import (
    SplitError,
    class_split_counts,
    prepare_splits,
    split_stratified,
    write_prepared,
)
from genpipe.data.sources import RawData, conform, load_digits, load_source, stratified_first_n
from tests.params import section

FRACTIONS = SplitFractions(train=0.7, val=0.15, test=0.15)


@pytest.fixture(scope="module")
def digits() -> RawData:
    return load_digits()


def test_digits_source(digits: RawData) -> None:
    assert digits.images.shape == (1797, 1, 8, 8) and digits.images.dtype == np.uint8
    assert digits.images.max() == 255 and digits.images.min() == 0
    assert digits.classes == [str(i) for i in range(10)]
    assert np.bincount(digits.labels).min() >= 170


def test_split_is_deterministic_stratified_and_disjoint(digits: RawData) -> None:
    first = split_stratified(digits.labels, FRACTIONS, seed=0)
    again = split_stratified(digits.labels, FRACTIONS, seed=0)
    other = split_stratified(digits.labels, FRACTIONS, seed=1)
    for name in ("train", "val", "test"):
        np.testing.assert_array_equal(first[name], again[name])
    assert not np.array_equal(np.sort(first["test"]), np.sort(other["test"]))

    joined = np.concatenate(list(first.values()))
    assert len(joined) == len(set(joined.tolist())) == 1797  # disjoint and covering
    for label, n in enumerate(np.bincount(digits.labels)):
        expected = class_split_counts(int(n), FRACTIONS)
        got = tuple(int((digits.labels[first[s]] == label).sum()) for s in ("train", "val", "test"))
        assert got == expected
    assert {s: len(i) for s, i in first.items()} == {"train": 1259, "val": 269, "test": 269}
    assert len(set(digits.labels[first["val"][:20]].tolist())) > 3  # shuffled, not class-sorted


def test_tiny_classes() -> None:
    assert class_split_counts(3, FRACTIONS) == (1, 1, 1)
    labels = np.array([0, 0, 0, 1, 1])
    with pytest.raises(SplitError, match=r"class 'b' .* only 2 images"):
        split_stratified(labels, FRACTIONS, seed=0, classes=["a", "b"])


def test_labels_must_match_classes() -> None:
    raw = RawData(np.zeros((6, 1, 2, 2), np.uint8), np.array([0, 0, 0, 1, 1, 1]), ["a", "b", "c"])
    with pytest.raises(SplitError, match=r"classes \['c'\] have no images"):
        prepare_splits(raw, FRACTIONS, 0)
    raw = RawData(raw.images, np.array([0, 0, 0, 1, 1, 5]), ["a", "b"])
    with pytest.raises(SplitError, match=r"labels \[5\] lie outside"):
        prepare_splits(raw, FRACTIONS, 0)


def test_stratified_first_n() -> None:
    labels = np.array([0] * 90 + [1] * 10)
    keep = stratified_first_n(labels, 20)
    assert keep.tolist() == list(range(18)) + list(range(90, 92))
    skewed = np.array([0] * 100 + [1, 2])
    assert np.bincount(skewed[stratified_first_n(skewed, 5)]).tolist() == [3, 1, 1]
    assert len(stratified_first_n(labels, None)) == 100


def test_conform_channels_and_size() -> None:
    gray = np.full((2, 1, 8, 8), 200, np.uint8)
    rgb = conform(gray, image_size=16, channels=3)
    assert rgb.shape == (2, 3, 16, 16) and (rgb == 200).all()
    red = np.zeros((1, 3, 4, 4), np.uint8)
    red[:, 0] = 255
    assert (conform(red, None, 1) == 76).all()


def test_prepare_writes_dataset_and_stats(tmp_path: Path) -> None:
    cfg = section("data", max_images=300, image_size=12)
    raw = load_source(cfg, tmp_path / "raw")
    out = tmp_path / "prepared"
    meta = write_prepared(out, prepare_splits(raw, cfg.split, cfg.seed), "digits", raw.classes)

    prepared = load_prepared(out)
    assert prepared.meta == meta and meta["dataset"] == "digits"
    assert prepared.image_shape == (1, 12, 12)
    assert sum(meta["counts"].values()) == 300
    for name in ("train", "val", "test"):
        assert set(prepared.split(name).labels.tolist()) == set(range(10))

    stats = pd.read_csv(out / "stats.csv")
    assert list(stats.columns) == [
        *("split", "index", "label", "height", "width", "channels"),
        *("min", "max", "mean", "std", "hash"),
    ]  # the contract in docs/ARCHITECTURE.md
    assert len(stats) == 300
    row = stats[(stats.split == "val") & (stats["index"] == 3)].iloc[0]
    image = prepared.val.images[3]
    assert row.label == prepared.val.labels[3]
    assert row.hash == hashlib.sha256(image.tobytes()).hexdigest()
    assert row["mean"] == pytest.approx(image.mean())
