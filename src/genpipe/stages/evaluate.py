"""DVC stage `evaluate`: score the VAE and the GAN on generation and restoration under one
protocol; write data/eval (report, every metric, panels, samples) and the plot tables. (The
champions are scored under the same protocol by the score_champions stage.)"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from genpipe import tracking
from genpipe.config import Params, load_params
from genpipe.stages import _cli

log = logging.getLogger(__name__)


def evaluate_stage(params: Params, args: argparse.Namespace) -> None:
    from genpipe import device
    from genpipe.evaluation.evaluate import evaluate
    from genpipe.evaluation.inputs import load_inputs
    from genpipe.evaluation.outputs import write_outputs

    started = time.time()
    where = device.select_device(params.runtime.device, device.detect())
    inputs = load_inputs(args.prepared, args.vae, args.gan, args.evaluator, where)
    with device.cpu_threads(params.runtime):
        evaluation = evaluate(inputs, params.evaluate, where)
    write_outputs(evaluation, args.out, args.plots)
    report = evaluation.report
    run_id = tracking.record_run(
        tracking.RunRecord(
            stage="evaluate",
            dataset=inputs.data.dataset,
            started=started,
            params={"evaluate": params.evaluate.model_dump(mode="json")},
            metrics={
                **evaluation.flat,
                **{f"seconds.{k}": v for k, v in evaluation.seconds.items()},
            },
            tags={
                "genpipe.data_hash": report.data_hash,
                "genpipe.protocol_hash": report.protocol_hash,
                "genpipe.evaluator_hash": report.evaluator_hash,
                "genpipe.train_run_id.vae": report.models["vae"].run_id,
                "genpipe.train_run_id.gan": report.models["gan"].run_id,
            },
            artifacts=[(args.out / "report.json", None), (args.plots, "plots")]
            + [(args.out / folder, folder) for folder in ("panels", "samples")],
            data=(args.prepared, report.data_hash),
        )
    )
    log.info(
        "evaluate: protocol %s, %s (MLflow run %s)",
        report.protocol_hash[:12],
        ", ".join(f"{k} {v:.1f}s" for k, v in evaluation.seconds.items()),
        run_id,
    )


def main(argv: list[str] | None = None) -> int:
    p = _cli.parser(__doc__ or "")
    p.add_argument("--prepared", type=Path, default=Path("data/prepared"))
    p.add_argument("--vae", type=Path, default=Path("data/models/vae"))
    p.add_argument("--gan", type=Path, default=Path("data/models/gan"))
    p.add_argument("--evaluator", type=Path, default=Path("data/models/evaluator"))
    p.add_argument("--out", type=Path, default=Path("data/eval"))
    p.add_argument("--plots", type=Path, default=Path("data/plots"), help="plot tables (git)")
    args = p.parse_args(argv)
    return _cli.run("evaluate", lambda: evaluate_stage(load_params(args.params), args))


if __name__ == "__main__":
    raise SystemExit(main())
