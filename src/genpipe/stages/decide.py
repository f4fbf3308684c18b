"""DVC stage `decide`: per task, VAE or GAN, and who holds `champion` (pure, run-cacheable).

Reads data/eval/report.json (which also scores the current champion under the same protocol)
and writes data/register/decision.json and decision.md, and the headline metrics that `dvc exp
show` and `dvc metrics diff` compare; the `register` stage then makes the MLflow registry hold
that decision.
"""

from __future__ import annotations

import logging
from pathlib import Path

from genpipe import io
from genpipe.config import Params, load_params
from genpipe.registry.decision import decision_record, headline_metrics, markdown
from genpipe.stages import _cli

log = logging.getLogger(__name__)


def decide(params: Params, report_path: Path, out: Path, metrics: Path) -> None:
    report = _cli.read_json(report_path, "evaluate report", "evaluate")
    record = decision_record(report, params.register)
    io.write_json(out / "decision.json", record)
    io.write_text(out / "decision.md", markdown(record))
    io.write_json(metrics, headline_metrics(report, record))
    for task, d in record["tasks"].items():
        verdict = d["verdict"]
        log.info(
            "%s: %s wins by %.4g (%s); champion: %s",
            task,
            verdict["winner"]["family"],
            verdict["margin"],
            verdict["metric"],
            d["reason"],
        )


def main(argv: list[str] | None = None) -> int:
    p = _cli.parser(__doc__ or "decide")
    p.add_argument("--report", type=Path, required=True, help="data/eval/report.json")
    p.add_argument("--out", type=Path, required=True, help="folder for decision.json and .md")
    p.add_argument("--metrics", type=Path, required=True, help="headline metrics JSON (git)")
    args = p.parse_args(argv)
    return _cli.run(
        "decide",
        lambda: decide(load_params(args.params), args.report, args.out, args.metrics),
    )


if __name__ == "__main__":
    raise SystemExit(main())
