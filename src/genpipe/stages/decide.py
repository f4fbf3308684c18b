"""DVC stage `decide`: per task, VAE or GAN, and who holds `champion` (pure, run-cacheable).

Reads data/eval/report.json and data/eval/incumbents.json (each task's champion, scored under
the same protocol) and writes data/register/decision.json and decision.md, and the headline
metrics that `dvc exp show` and `dvc metrics diff` compare; the `register` stage then applies
the decision to the MLflow registry.
"""

from __future__ import annotations

import logging
from pathlib import Path

from genpipe import io
from genpipe.config import Params, load_params
from genpipe.evaluation.schema import Incumbents, Report, read
from genpipe.registry.decision import decision_record, headline_metrics, markdown
from genpipe.stages import _cli

log = logging.getLogger(__name__)


def decide(
    params: Params, report_path: Path, incumbents_path: Path, out: Path, metrics: Path
) -> None:
    report = read(Report, report_path, "evaluate")
    incumbents = read(Incumbents, incumbents_path, "score_champions")
    record = decision_record(report, incumbents, params.register)
    io.write_json(out / "decision.json", record.model_dump(mode="json"))
    io.write_text(out / "decision.md", markdown(record))
    io.write_json(metrics, headline_metrics(report, record))
    for task, d in record.tasks.items():
        v = d.verdict
        log.info(
            "%s: %s wins by %.4g (%s); champion: %s",
            task,
            v.winner.family,
            v.margin,
            v.metric,
            d.reason,
        )


def main(argv: list[str] | None = None) -> int:
    p = _cli.parser(__doc__ or "decide")
    p.add_argument("--report", type=Path, required=True, help="data/eval/report.json")
    p.add_argument("--incumbents", type=Path, required=True, help="data/eval/incumbents.json")
    p.add_argument("--out", type=Path, required=True, help="folder for decision.json and .md")
    p.add_argument("--metrics", type=Path, required=True, help="headline metrics JSON (git)")
    args = p.parse_args(argv)
    return _cli.run(
        "decide",
        lambda: decide(
            load_params(args.params), args.report, args.incumbents, args.out, args.metrics
        ),
    )


if __name__ == "__main__":
    raise SystemExit(main())
