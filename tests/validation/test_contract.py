"""The GX data contract on real digits, and each kind of bad data it must catch by name."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from genpipe.data.dataset import PreparedDataError, load_prepared
from genpipe.validation import failure_message, validate_prepared
from genpipe.validation.tables import class_proportions, leakage_table
from tests.params import section
from tests.validation.conftest import replace_split


def failed(summary: dict) -> set[str]:
    return {name for name, ok in summary["expectations"].items() if not ok}


def failure(summary: dict, check: str) -> dict:
    return next(f for f in summary["failures"] if f["check"] == check)


def test_real_digits_pass_every_expectation_and_build_data_docs(
    prepared: Path, tmp_path: Path
) -> None:
    docs = tmp_path / "docs"
    summary = validate_prepared(prepared, section("validate"), docs)
    assert summary["success"], failure_message(summary)
    assert summary["counts"] == {"train": 1078, "val": 359, "test": 360}
    assert summary["evaluated"] == len(summary["expectations"]) >= 15
    assert summary["data_hash"] == load_prepared(prepared).data_hash
    index = (docs / "index.html").read_text()
    assert "leakage" in index and "class_proportions" in index
    assert list(docs.glob("validations/**/*.html"))
    # Deterministic: training depends on summary.json, so a rerun must give the same content.
    assert validate_prepared(prepared, section("validate"), tmp_path / "docs2") == summary


def test_nan_in_float_images_is_caught(prepared: Path, tmp_path: Path) -> None:
    images = load_prepared(prepared).val.images.astype(np.float32)
    images[3, 0, 4, 4] = np.nan
    replace_split(prepared, "val", images=images)
    summary = validate_prepared(prepared, section("validate"), tmp_path / "docs")
    assert not summary["success"]
    assert {"dtype_uint8", "no_nan_min", "no_nan_max", "no_nan_mean"} <= failed(summary)
    assert [(r["split"], r["index"]) for r in failure(summary, "no_nan_mean")["rows"]] == [
        ("val", 3)
    ]
    assert failure(summary, "dtype_uint8")["rows"][0]["file"].endswith("val.npz")
    message = failure_message(summary)
    assert "no_nan_mean" in message and "val.npz" in message and "float32" in message


def test_wrong_shaped_split_is_caught(prepared: Path, tmp_path: Path) -> None:
    test = load_prepared(prepared).test
    big = np.kron(test.images, np.ones((1, 1, 2, 2), dtype=np.uint8))  # [N, 1, 16, 16]
    replace_split(prepared, "test", images=big)
    summary = validate_prepared(prepared, section("validate"), tmp_path / "docs")
    assert failed(summary) == {"single_height", "single_width"}
    f = failure(summary, "single_height")
    assert f["unexpected_count"] == len(test) and {r["height"] for r in f["rows"]} == {16}


def test_train_test_leakage_is_caught_with_the_hash(prepared: Path, tmp_path: Path) -> None:
    data = load_prepared(prepared)
    train_images = data.train.images.copy()
    train_images[5] = data.test.images[11]
    replace_split(prepared, "train", images=train_images)
    summary = validate_prepared(prepared, section("validate"), tmp_path / "docs")
    assert failed(summary) == {"no_leakage"}
    rows = failure(summary, "no_leakage")["rows"]
    assert {(r["split"], r["index"]) for r in rows} == {("train", 5), ("test", 11)}
    assert len({r["hash"] for r in rows}) == 1
    assert rows[0]["hash"] in failure_message(summary)


def test_class_missing_from_a_split_is_out_of_proportion(prepared: Path, tmp_path: Path) -> None:
    labels = load_prepared(prepared).train.labels.copy()
    labels[labels == 3] = 4
    replace_split(prepared, "train", labels=labels)
    summary = validate_prepared(prepared, section("validate"), tmp_path / "docs")
    assert failed(summary) == {"class_proportion"}
    assert failure(summary, "class_proportion")["rows"] == [
        {"split": "train", "label": 3, "count": 0, "proportion": 0.0}
    ]


def test_too_few_rows_and_unexpected_labels(prepared: Path, tmp_path: Path) -> None:
    config = section(
        "validate", min_rows={"train": 2000, "val": 20, "test": 20}, expected_labels=list(range(9))
    )
    summary = validate_prepared(prepared, config, tmp_path / "docs")
    assert failed(summary) == {"min_rows", "labels_expected"}
    assert failure(summary, "min_rows")["rows"][0] | {"file": None} == {
        "split": "train",
        "file": None,
        "dtype": "uint8",
        "rows": 1078,
        "meta_rows": 1078,
        "min_rows": 2000,
    }
    assert {r["label"] for r in failure(summary, "labels_expected")["rows"]} == {9}


def test_stale_stats_csv_is_caught(prepared: Path, tmp_path: Path) -> None:
    stats = pd.read_csv(prepared / "stats.csv")
    stats.loc[42, "mean"] += 1.0
    stats.drop(index=7).to_csv(prepared / "stats.csv", index=False)
    summary = validate_prepared(prepared, section("validate"), tmp_path / "docs")
    assert failed(summary) == {"stats_csv_hash", "stats_csv_values"}
    assert [r["index"] for r in failure(summary, "stats_csv_hash")["rows"]] == [7]
    assert [r["max_abs_diff"] for r in failure(summary, "stats_csv_values")["rows"]] == [
        pytest.approx(1.0)
    ]


def test_unusable_arrays_are_rejected_naming_the_file(prepared: Path, tmp_path: Path) -> None:
    (prepared / "stats.csv").unlink()
    with pytest.raises(PreparedDataError, match=r"stats\.csv: not found"):
        validate_prepared(prepared, section("validate"), tmp_path / "docs")
    replace_split(prepared, "val", images=load_prepared(prepared).val.images[:, 0])  # [N, 8, 8]
    with pytest.raises(PreparedDataError, match=r"val\.npz: images must be 4-D"):
        validate_prepared(prepared, section("validate"), tmp_path / "docs")


def test_derived_tables() -> None:
    images = pd.DataFrame(
        {
            "split": ["train", "train", "train", "val", "test"],
            "index": [0, 1, 2, 0, 0],
            "label": [0, 0, 1, 1, 0],
            "hash": ["a", "a", "b", "b", "c"],
        }
    )
    props = class_proportions(images, [0, 1, 2])
    assert props.set_index(["split", "label"])["proportion"].to_dict() == {
        ("train", 0): pytest.approx(2 / 3),
        ("train", 1): pytest.approx(1 / 3),
        ("train", 2): 0.0,
        ("val", 0): 0.0,
        ("val", 1): 1.0,
        ("val", 2): 0.0,
        ("test", 0): 1.0,
        ("test", 1): 0.0,
        ("test", 2): 0.0,
    }
    # Duplicates inside train are not leakage; "b" in val is only checked when val is listed.
    assert leakage_table(images, ["train", "test"])["hash"].is_unique
    assert not leakage_table(images, ["train", "val"])["hash"].is_unique
