"""Stage `validate`: check data/prepared against the data contract (Great Expectations).

Writes summary.json (which the training stages depend on) and GX Data Docs, records both in
MLflow, and exits 2 when the data breaks the contract, so `dvc repro` stops before training.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from pathlib import Path

from genpipe import io, tracking
from genpipe.config import Params, load_params
from genpipe.stages import _cli
from genpipe.validation import DataValidationError, failure_message, validate_prepared

log = logging.getLogger(__name__)


def validate(params: Params, prepared: Path, out: Path) -> None:
    started = time.time()
    summary_path, docs = out / "summary.json", out / "docs"
    summary_path.unlink(missing_ok=True)  # never leave a stale verdict behind a crash
    out.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".docs.", dir=out))
    try:
        summary = validate_prepared(prepared, params.validate, staging)
        shutil.rmtree(docs, ignore_errors=True)
        os.replace(staging, docs)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    io.write_json(summary_path, summary)
    log.info(
        "%d/%d expectations met -> %s", summary["successful"], summary["evaluated"], summary_path
    )
    tracking.record_run(
        tracking.RunRecord(
            stage="validate",
            dataset=summary["dataset"],
            started=started,
            params={"validate": params.validate.model_dump(mode="json")},
            metrics={
                "validation_success": float(summary["success"]),
                "expectations_evaluated": summary["evaluated"],
                "expectations_failed": summary["failed"],
            },
            tags={
                "genpipe.data_hash": summary["data_hash"],
                "genpipe.validation_success": str(summary["success"]).lower(),
            },
            artifacts=[(summary_path, None), (docs, "docs")],
            failed=not summary["success"],
        )
    )
    if not summary["success"]:
        raise DataValidationError(failure_message(summary, summary_path))


def main(argv: list[str] | None = None) -> int:
    p = _cli.parser("Validate the prepared data with Great Expectations before training.")
    p.add_argument(
        "--prepared", type=Path, default=Path("data/prepared"), help="prepare stage output"
    )
    p.add_argument(
        "--out", type=Path, default=Path("data/validation"), help="summary.json + docs/ (dvc outs)"
    )
    args = p.parse_args(argv)
    return _cli.run("validate", lambda: validate(load_params(args.params), args.prepared, args.out))


if __name__ == "__main__":
    raise SystemExit(main())
