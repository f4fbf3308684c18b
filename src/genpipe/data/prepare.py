"""Split the downloaded images into train/val/test, and describe every image in stats.csv.

The split is stratified per class and a pure function of (labels, fractions, seed): for each
class (in label order) a seeded permutation is cut into val = round(n * val_fraction) and
test = round(n * test_fraction) images (halves round up; at least one each) and train takes
the rest, so every class is in every split and the exact counts are reproducible. Each split is
then shuffled with the same generator, so taking its first k images does not favour a class.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from genpipe import io
from genpipe.config.data import SplitFractions
from genpipe.data.dataset import SPLITS, Split, save_prepared
from genpipe.data.sources import RawData
from genpipe.data.stats import image_stats
from genpipe.errors import GenpipeError

log = logging.getLogger(__name__)


class SplitError(GenpipeError):
    """The data cannot be split as asked (a class too small, labels outside the classes)."""


def class_split_counts(n: int, fractions: SplitFractions) -> tuple[int, int, int]:
    """(train, val, test) counts for one class of `n` images; each at least 1."""
    n_val = max(1, int(np.floor(n * fractions.val + 0.5)))
    n_test = max(1, int(np.floor(n * fractions.test + 0.5)))
    return n - n_val - n_test, n_val, n_test


def split_stratified(
    labels: np.ndarray, fractions: SplitFractions, seed: int, classes: list[str] | None = None
) -> dict[str, np.ndarray]:
    """Indices into `labels` for each of train/val/test; disjoint, covering, stratified."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    parts: dict[str, list[np.ndarray]] = {name: [] for name in SPLITS}
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        n_train, n_val, _ = class_split_counts(len(members), fractions)
        if n_train < 1:
            name = classes[label] if classes is not None else str(label)
            raise SplitError(
                f"class {name!r} (label {label}) has only {len(members)} images; every split needs "
                "at least one, so each class needs at least 3 (raise data.max_images or add images)"
            )
        parts["train"].append(members[:n_train])
        parts["val"].append(members[n_train : n_train + n_val])
        parts["test"].append(members[n_train + n_val :])
    return {name: rng.permutation(np.concatenate(parts[name])) for name in SPLITS}


def prepare_splits(raw: RawData, fractions: SplitFractions, seed: int) -> dict[str, Split]:
    """The raw images cut into stratified splits, after checking labels match the classes."""
    if len(raw.labels) == 0:
        raise SplitError(
            "the downloaded dataset holds no images; check the data section of params.yaml"
        )
    bad = raw.labels[(raw.labels < 0) | (raw.labels >= len(raw.classes))]
    if len(bad):
        raise SplitError(
            f"labels {sorted(set(bad.tolist()))[:5]} lie outside the {len(raw.classes)} classes "
            f"{raw.classes[:10]}; rerun `dvc repro download`"
        )
    missing = sorted(set(range(len(raw.classes))) - set(raw.labels.tolist()))
    if missing:
        raise SplitError(
            f"classes {[raw.classes[i] for i in missing][:10]} have no images, so they cannot be "
            "in every split; raise data.max_images (or add images) and rerun `dvc repro download`"
        )
    indices = split_stratified(raw.labels, fractions, seed, raw.classes)
    return {name: Split(raw.images[idx], raw.labels[idx]) for name, idx in indices.items()}


def write_prepared(out: Path, splits: dict[str, Split], dataset: str, classes: list[str]) -> dict:
    """The prepared-dataset folder (genpipe.data.dataset format) plus stats.csv; returns meta."""
    stats = image_stats(splits)
    meta = save_prepared(out, splits, {"dataset": dataset, "classes": classes})
    io.write_text(Path(out) / "stats.csv", stats.to_csv(index=False))
    log.info("prepared %s: %s, data_hash %s", dataset, meta["counts"], meta["data_hash"][:12])
    return meta
