"""The tables the data contract is checked on, built from the prepared arrays (pure pandas).

Statistics are recomputed from the arrays rather than read from stats.csv, so a stale or edited
stats.csv cannot hide bad data; stats.csv is then compared against the recomputed table. Checks
that span rows (class balance, cross-split leakage, split sizes) get their own derived table so
that each one is an ordinary column expectation in Great Expectations and shows up in Data Docs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from genpipe.config import ValidateConfig
from genpipe.data.dataset import SPLITS, PreparedData, PreparedDataError
from genpipe.data.stats import COLUMNS, image_stats

NUMERIC_STATS = ("label", "height", "width", "channels", "min", "max", "mean", "std")


def check_arrays(prepared: PreparedData, folder: Path) -> None:
    """Reject arrays no statistic can be computed on: not [N, C, H, W], or labels that don't fit."""
    for name in SPLITS:
        split = prepared.split(name)
        path = folder / f"{name}.npz"
        if split.images.ndim != 4:
            raise PreparedDataError(
                f"{path}: images must be 4-D uint8 [N, C, H, W], got {split.images.ndim}-D "
                f"{split.images.dtype} of shape {split.images.shape}; rerun `dvc repro prepare`"
            )
        if split.labels.ndim != 1 or len(split.labels) != len(split.images):
            raise PreparedDataError(
                f"{path}: {len(split.images)} images but labels of shape {split.labels.shape}; "
                "rerun `dvc repro prepare`"
            )


def read_stats_csv(path: Path) -> pd.DataFrame:
    """stats.csv as written by `prepare`; a missing file or column is a clear error."""
    try:
        frame = pd.read_csv(path, dtype={"split": str, "hash": str})
    except FileNotFoundError:
        raise PreparedDataError(f"{path}: not found; rerun `dvc repro prepare`") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise PreparedDataError(
            f"{path}: unreadable CSV ({exc}); rerun `dvc repro prepare`"
        ) from None
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise PreparedDataError(f"{path}: missing columns {missing}; rerun `dvc repro prepare`")
    return frame[list(COLUMNS)]


def expected_labels(prepared: PreparedData, config: ValidateConfig) -> list[int]:
    """validate.expected_labels, else the indices of the dataset's classes in meta.json."""
    if config.expected_labels is not None:
        return sorted(config.expected_labels)
    return list(range(len(prepared.classes)))


def expected_shape(prepared: PreparedData) -> dict[str, int]:
    """The image shape meta.json promises (falling back to the train arrays)."""
    _, c, h, w = prepared.train.images.shape
    meta = prepared.meta
    return {
        "channels": int(meta.get("channels", c)),
        "height": int(meta.get("height", h)),
        "width": int(meta.get("width", w)),
    }


def splits_table(prepared: PreparedData, folder: Path, config: ValidateConfig) -> pd.DataFrame:
    """One row per split file: dtype, size, the size meta.json claims and the minimum required."""
    counts = prepared.meta.get("counts", {})
    rows = []
    for name in SPLITS:
        split = prepared.split(name)
        rows.append(
            {
                "split": name,
                "file": str(folder / f"{name}.npz"),
                "dtype": str(split.images.dtype),
                "rows": len(split),
                "meta_rows": int(counts.get(name, -1)),
                "min_rows": int(config.min_rows.get(name, 1)),
            }
        )
    return pd.DataFrame(rows)


def class_proportions(images: pd.DataFrame, labels: list[int]) -> pd.DataFrame:
    """Share of each expected label in each split; absent classes appear with proportion 0."""
    counts = pd.crosstab(images["split"], images["label"]).reindex(
        index=list(SPLITS), columns=labels, fill_value=0
    )
    totals = images["split"].value_counts().reindex(list(SPLITS), fill_value=0).to_numpy()[:, None]
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(totals > 0, counts.to_numpy() / np.maximum(totals, 1), 0.0)
    return pd.DataFrame(
        {
            "split": np.repeat(list(SPLITS), len(labels)),
            "label": np.tile(np.asarray(labels, dtype=np.int64), len(SPLITS)),
            "count": counts.to_numpy().reshape(-1),
            "proportion": share.reshape(-1),
        }
    )


def leakage_table(images: pd.DataFrame, splits: list[str]) -> pd.DataFrame:
    """Distinct hashes per split in `splits`: a hash seen twice is an image shared by two splits."""
    frame = images.loc[images["split"].isin(splits), ["split", "index", "hash"]]
    return frame.drop_duplicates(subset=["split", "hash"]).reset_index(drop=True)


def stats_csv_table(images: pd.DataFrame, stats_csv: pd.DataFrame) -> pd.DataFrame:
    """Recomputed statistics next to stats.csv's per (split, index); one-sided rows are kept."""
    merged = images.merge(
        stats_csv, on=["split", "index"], how="outer", suffixes=("", "_csv"), indicator=True
    )
    diffs = []
    for col in NUMERIC_STATS:
        a = merged[col].to_numpy(dtype=np.float64)
        b = merged[f"{col}_csv"].to_numpy(dtype=np.float64)
        with np.errstate(invalid="ignore"):
            d = np.abs(a - b)
        diffs.append(np.where(np.isnan(a) & np.isnan(b), 0.0, d))
    in_both = (merged["_merge"] == "both").to_numpy()
    return pd.DataFrame(
        {
            "split": merged["split"],
            "index": merged["index"],
            "hash": merged["hash"],
            "hash_csv": merged["hash_csv"],
            # Worst disagreement over the numeric columns, in grey levels; a one-sided NaN is inf.
            "max_abs_diff": np.where(in_both, _nan_as_inf(np.max(diffs, axis=0)), np.nan),
        }
    )


def _nan_as_inf(values: np.ndarray) -> np.ndarray:
    return np.where(np.isnan(values), np.inf, values)


def build_tables(
    prepared: PreparedData, stats_csv: pd.DataFrame, config: ValidateConfig, folder: Path
) -> dict[str, pd.DataFrame]:
    """Every table the suite validates, keyed by the name used for its GX asset and suite."""
    images = image_stats({name: prepared.split(name) for name in SPLITS})
    return {
        "splits": splits_table(prepared, folder, config),
        "images": images,
        "class_proportions": class_proportions(images, expected_labels(prepared, config)),
        "leakage": leakage_table(images, list(config.leakage_splits)),
        "stats_csv": stats_csv_table(images, stats_csv),
    }
