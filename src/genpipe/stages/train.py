"""DVC stages `train_<task>`: train one model family on data/prepared.

Writes the model dir (model.pt, previews, run.json) and the DVC plots CSV of its epochs.
Resume checkpoints live in `--work` (outside DVC's outputs): a killed run resumes on the next
`dvc repro`.
"""

from __future__ import annotations

from pathlib import Path

from genpipe.config import load_params
from genpipe.stages import _cli
from genpipe.training.run import TrainPaths, train


def main(argv: list[str] | None = None) -> int:
    p = _cli.parser(__doc__ or "")
    p.add_argument("--task", required=True, help="model family: vae, gan or evaluator")
    p.add_argument("--prepared", type=Path, default=Path("data/prepared"))
    p.add_argument("--out", type=Path, required=True, help="model dir (dvc out)")
    p.add_argument("--work", type=Path, required=True, help="resume folder (outside DVC)")
    p.add_argument("--plots", type=Path, default=None, help="per-epoch CSV (dvc plots)")
    args = p.parse_args(argv)
    paths = TrainPaths(args.prepared, args.out, args.work, args.plots)
    return _cli.run(
        f"train_{args.task}",
        lambda: train(args.task, load_params(args.params), paths),
    )


if __name__ == "__main__":
    raise SystemExit(main())
