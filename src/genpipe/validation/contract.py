"""The data contract as plain data: which expectation runs on which table, from `validate:`.

Kept apart from GX so the rules read in one place and can be tested without importing it; each
check is named, and that name is the key of summary.json's `expectations` map.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from genpipe.config import ValidateConfig

CSV_TOLERANCE = 1e-3  # grey levels: stats.csv may be written with rounded floats


@dataclass(frozen=True)
class Check:
    """One named expectation: `kind` is the GX expectation class name, `kwargs` its arguments."""

    name: str
    table: str
    kind: str
    kwargs: dict[str, Any]
    notes: str


def _in_set(name: str, table: str, column: str, values: list, notes: str) -> Check:
    kwargs = {"column": column, "value_set": values}
    return Check(name, table, "ExpectColumnValuesToBeInSet", kwargs, notes)


def _between(name: str, table: str, column: str, lo: float, hi: float, notes: str) -> Check:
    kwargs = {"column": column, "min_value": lo, "max_value": hi}
    return Check(name, table, "ExpectColumnValuesToBeBetween", kwargs, notes)


def _pair(name: str, table: str, kind: str, a: str, b: str, notes: str, **extra: Any) -> Check:
    return Check(name, table, kind, {"column_A": a, "column_B": b, **extra}, notes)


def contract(config: ValidateConfig, labels: list[int], shape: dict[str, int]) -> list[Check]:
    """Every check, in report order. `shape` is meta.json's channels/height/width."""
    pixels, mean, std, share = (
        config.pixel_range,
        config.image_mean,
        config.image_std,
        config.class_proportion,
    )
    checks = [
        _in_set("dtype_uint8", "splits", "dtype", ["uint8"], "Images are stored as uint8."),
        _pair(
            "min_rows",
            "splits",
            "ExpectColumnPairValuesAToBeGreaterThanB",
            "rows",
            "min_rows",
            "Each split has at least validate.min_rows images.",
            or_equal=True,
        ),
        _pair(
            "counts_match_meta",
            "splits",
            "ExpectColumnPairValuesToBeEqual",
            "rows",
            "meta_rows",
            "meta.json counts match the arrays.",
        ),
    ]
    for col in ("min", "max", "mean", "std"):
        kind, notes = "ExpectColumnValuesToNotBeNull", f"No image has a NaN {col} (no NaN pixel)."
        checks.append(Check(f"no_nan_{col}", "images", kind, {"column": col}, notes))
    for col in ("min", "max"):
        notes = "Pixels lie in validate.pixel_range."
        checks.append(_between(f"pixel_range_{col}", "images", col, pixels.min, pixels.max, notes))
    for dim, value in shape.items():
        notes = f"Every image has {dim} {value}, as meta.json says."
        checks.append(_in_set(f"single_{dim}", "images", dim, [value], notes))
    leakage = f"No image (content hash) is in more than one of {list(config.leakage_splits)}."
    return [
        *checks,
        _in_set("labels_expected", "images", "label", labels, "Labels are the expected ones."),
        _between(
            "image_mean",
            "images",
            "mean",
            mean.min * 255,
            mean.max * 255,
            "Per-image mean within validate.image_mean (fractions of 255).",
        ),
        _between(
            "image_std",
            "images",
            "std",
            std.min * 255,
            std.max * 255,
            "Per-image std within validate.image_std (fractions of 255).",
        ),
        _between(
            "class_proportion",
            "class_proportions",
            "proportion",
            share.min,
            share.max,
            "Each class's share of each split is within validate.class_proportion.",
        ),
        Check("no_leakage", "leakage", "ExpectColumnValuesToBeUnique", {"column": "hash"}, leakage),
        _pair(
            "stats_csv_hash",
            "stats_csv",
            "ExpectColumnPairValuesToBeEqual",
            "hash",
            "hash_csv",
            "stats.csv lists exactly the arrays' images, with the same hashes.",
        ),
        _between(
            "stats_csv_values",
            "stats_csv",
            "max_abs_diff",
            0,
            CSV_TOLERANCE,
            "stats.csv labels, shapes and min/max/mean/std agree with the arrays.",
        ),
    ]
