"""Validate a prepared folder and describe the outcome: summary.json content and the error text.

The summary is deterministic (no timestamps or run ids) because training stages depend on it in
dvc.yaml: an unchanged dataset must give a byte-identical file, or DVC would retrain for nothing.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from genpipe.config import ValidateConfig
from genpipe.data.dataset import SPLITS, data_hash, load_prepared
from genpipe.errors import GenpipeError
from genpipe.validation import contract, expectations, tables

log = logging.getLogger(__name__)

MAX_ROWS = 20  # offending rows kept per failed check in summary.json
MAX_ROWS_SHOWN = 5  # and shown in the error message


class DataValidationError(GenpipeError):
    """The prepared data breaks the data contract; the message lists each failed expectation."""


def validate_prepared(
    folder: str | Path, config: ValidateConfig, docs_dir: str | Path
) -> dict[str, Any]:
    """Check `folder` against the contract, write Data Docs to `docs_dir`, return the summary."""
    folder = Path(folder)
    prepared = load_prepared(folder)
    tables.check_arrays(prepared, folder)
    stats_csv = tables.read_stats_csv(folder / "stats.csv")
    frames = tables.build_tables(prepared, stats_csv, config, folder)
    checks = contract.contract(
        config, tables.expected_labels(prepared, config), tables.expected_shape(prepared)
    )
    results = expectations.run_contract(frames, checks, Path(docs_dir))
    splits = {name: prepared.split(name) for name in SPLITS}
    return summarise(
        results,
        frames,
        prepared.meta.get("dataset"),
        prepared.meta.get("data_hash") or data_hash(splits),
    )


def summarise(
    results: list[dict[str, Any]], frames: dict[str, pd.DataFrame], dataset: str | None, hash_: str
) -> dict[str, Any]:
    failed = [r for r in results if not r["success"]]
    splits = frames["splits"]
    return {
        "success": not failed,
        "dataset": dataset,
        "data_hash": hash_,
        "counts": dict(zip(splits["split"].map(str), splits["rows"].map(int), strict=True)),
        "evaluated": len(results),
        "successful": len(results) - len(failed),
        "failed": len(failed),
        "expectations": {r["check"]: r["success"] for r in results},
        "failures": [_failure(r, frames[r["table"]]) for r in failed],
    }


def _failure(result: dict[str, Any], frame: pd.DataFrame) -> dict[str, Any]:
    index = result["unexpected_index_list"]
    rows = frame.loc[[i for i in index[:MAX_ROWS] if i in frame.index]]
    return {
        "check": result["check"],
        "table": result["table"],
        "expectation": result["expectation"],
        "kwargs": _clean(result["kwargs"]),
        "unexpected_count": _clean(result["unexpected_count"]),
        "observed_value": _clean(result["observed_value"]),
        "error": result["error"],
        "rows": _clean(rows.to_dict(orient="records")),
    }


def _clean(value: Any) -> Any:
    """JSON-safe and strict: numpy scalars to Python, NaN/inf to None."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def failure_message(summary: dict[str, Any], summary_path: Path | None = None) -> str:
    """Which expectations failed and on which values, for the terminal."""
    lines = [f"{summary['failed']} of {summary['evaluated']} data expectations failed:"]
    for f in summary["failures"]:
        target = ", ".join(
            f"{k}={v}"
            for k, v in f["kwargs"].items()
            if k.startswith("column") or k.endswith("value")
        )
        lines.append(f"  - {f['check']}: {f['expectation']} on table {f['table']} ({target})")
        if f["error"]:
            lines.append(f"      error: {f['error']}")
        if f["unexpected_count"] is not None:
            lines.append(f"      {f['unexpected_count']} offending rows, e.g.:")
        elif f["observed_value"] is not None:
            lines.append(f"      observed: {f['observed_value']}")
        for row in f["rows"][:MAX_ROWS_SHOWN]:
            lines.append("        " + " ".join(f"{k}={v}" for k, v in row.items()))
    where = f" Details: {summary_path} and the Data Docs next to it." if summary_path else ""
    lines.append(f"Fix the data (or the `validate:` bounds in params.yaml) and rerun.{where}")
    return "\n".join(lines)
