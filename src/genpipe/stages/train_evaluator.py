"""DVC stage `train_evaluator`: train the classifier whose features define the generation
metrics; write data/models/evaluator (model.pt, run.json) and data/metrics/evaluator.json."""

from __future__ import annotations

from pathlib import Path

from genpipe.config import Params
from genpipe.stages import _cli


def main(argv: list[str] | None = None) -> int:
    p = _cli.parser(__doc__ or "")
    p.add_argument("--prepared", type=Path, default=Path("data/prepared"))
    p.add_argument("--out", type=Path, default=Path("data/models/evaluator"))
    p.add_argument("--metrics", type=Path, default=Path("data/metrics/evaluator.json"))
    args = p.parse_args(argv)

    def body(params: Params) -> int:
        from genpipe.training.classifier import train_evaluator_stage

        train_evaluator_stage(args.prepared, args.out, args.metrics, params.evaluator)
        return 0

    return _cli.run("train_evaluator", body, args.params)


if __name__ == "__main__":
    raise SystemExit(main())
