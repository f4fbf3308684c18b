"""Write an evaluation: report.json, the flat metrics, DVC plot tables, panels, sample grids."""

from __future__ import annotations

import csv
import io as textio
from pathlib import Path
from typing import Any

from genpipe import io
from genpipe.evaluation.evaluate import Evaluation
from genpipe.evaluation.panels import label_panel
from genpipe.evaluation.report import generation_rows, restoration_rows
from genpipe.grids import save_grid, save_rows


def _csv(rows: list[dict[str, Any]]) -> str:
    buf = textio.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def write_outputs(evaluation: Evaluation, out: Path, plots: Path) -> None:
    """report.json, every metric flat (metrics.json), panels and sample grids under `out`; the
    DVC plot tables under `plots`."""
    report = evaluation.report.model_dump(mode="json", exclude_unset=True)
    io.write_json(out / "report.json", report)
    # The hash rides along so a diff of two runs shows when their numbers are not comparable.
    flat = {"protocol_hash": evaluation.report.protocol_hash, **evaluation.flat}
    io.write_json(out / "metrics.json", flat)
    io.write_text(plots / "restoration_psnr.csv", _csv(restoration_rows(report)))
    io.write_text(plots / "generation.csv", _csv(generation_rows(report)))
    for result in evaluation.restoration:
        panel = out / "panels" / f"{result.corruption.name}.png"
        save_rows(panel, list(result.panel.values()))
        label_panel(panel, list(result.panel))
    for source, images in evaluation.samples.items():
        save_grid(out / "samples" / f"{source}.png", images)
