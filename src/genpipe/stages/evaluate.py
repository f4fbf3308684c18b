"""DVC stage `evaluate`: score the VAE and the GAN on generation and restoration under one
protocol; write data/eval (report, panels, samples, plots), the flat metrics and MLflow runs."""

from __future__ import annotations

import logging
from pathlib import Path

from genpipe.config import Params
from genpipe.stages import _cli

log = logging.getLogger(__name__)


def main(argv: list[str] | None = None) -> int:
    p = _cli.parser(__doc__ or "")
    p.add_argument("--prepared", type=Path, default=Path("data/prepared"))
    p.add_argument("--vae", type=Path, default=Path("data/models/vae"))
    p.add_argument("--gan", type=Path, default=Path("data/models/gan"))
    p.add_argument("--evaluator", type=Path, default=Path("data/models/evaluator"))
    p.add_argument("--out", type=Path, default=Path("data/eval"))
    p.add_argument("--metrics", type=Path, default=Path("data/metrics/evaluate.json"))
    args = p.parse_args(argv)

    def body(params: Params) -> int:
        from genpipe.data.dataset import load_prepared
        from genpipe.evaluation.mlflow_log import log_evaluation
        from genpipe.evaluation.run import EvaluatePaths, evaluate_models, write_outputs

        paths = EvaluatePaths(
            args.prepared, args.vae, args.gan, args.evaluator, args.out, args.metrics
        )
        evaluation = evaluate_models(paths, params.evaluate)
        write_outputs(evaluation, paths)
        dataset = load_prepared(args.prepared).meta.get("dataset", "unknown")
        run_id = log_evaluation(evaluation, paths, params.evaluate, f"genpipe-{dataset}")
        log.info(
            "evaluate: protocol %s, %s (MLflow run %s)",
            evaluation.report["protocol_hash"][:12],
            ", ".join(f"{k} {v:.1f}s" for k, v in evaluation.seconds.items()),
            run_id,
        )
        return 0

    return _cli.run("evaluate", body, args.params)


if __name__ == "__main__":
    raise SystemExit(main())
