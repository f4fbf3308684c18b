"""DVC stage `train_vae`: train the VAE on data/prepared; write data/models/vae + an MLflow run."""

from __future__ import annotations

from pathlib import Path

from genpipe.config import Params
from genpipe.stages import _cli
from genpipe.training.run import TrainPaths, train


def main(argv: list[str] | None = None) -> int:
    p = _cli.parser(__doc__ or "")
    p.add_argument("--prepared", type=Path, default=Path("data/prepared"))
    p.add_argument("--out", type=Path, default=Path("data/models/vae"))
    p.add_argument("--checkpoints", type=Path, default=Path("data/checkpoints/vae"))
    p.add_argument("--plots", type=Path, default=Path("data/plots/train_vae.csv"))
    args = p.parse_args(argv)

    def body(params: Params) -> int:
        paths = TrainPaths(args.prepared, args.out, args.checkpoints, args.plots)
        train("vae", params, paths)
        return 0

    return _cli.run("train_vae", body, args.params)


if __name__ == "__main__":
    raise SystemExit(main())
