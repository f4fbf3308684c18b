"""DVC stages `train_<task>`: train one model family on data/prepared.

Writes the model dir (model.pt, previews, run.json), the DVC plots CSV of its epochs and, when
asked, a metrics JSON of the export (the evaluator's accuracies). Resume checkpoints live in
`--work` (outside DVC's outputs): a killed run resumes on the next `dvc repro`.
"""

from __future__ import annotations

from pathlib import Path

from genpipe import io
from genpipe.config import Params
from genpipe.stages import _cli
from genpipe.training.run import TrainPaths, train


def train_stage(params: Params, task: str, paths: TrainPaths, metrics: Path | None) -> None:
    result = train(task, params, paths)
    if metrics is not None:
        io.write_json(metrics, {k: round(v, 6) for k, v in result.exported.items()})


def main(argv: list[str] | None = None) -> int:
    p = _cli.parser(__doc__ or "")
    p.add_argument("--task", required=True, help="model family: vae, gan or evaluator")
    p.add_argument("--prepared", type=Path, default=Path("data/prepared"))
    p.add_argument("--out", type=Path, required=True, help="model dir (dvc out)")
    p.add_argument("--work", type=Path, required=True, help="resume folder (outside DVC)")
    p.add_argument("--plots", type=Path, default=None, help="per-epoch CSV (dvc plots)")
    p.add_argument("--metrics", type=Path, default=None, help="export metrics JSON (dvc metrics)")
    args = p.parse_args(argv)
    paths = TrainPaths(args.prepared, args.out, args.work, args.plots)
    return _cli.run(
        f"train_{args.task}",
        lambda params: train_stage(params, args.task, paths, args.metrics),
        args.params,
    )


if __name__ == "__main__":
    raise SystemExit(main())
