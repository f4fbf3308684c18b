"""DVC stages `train_<task>`: train one model family on data/prepared.

Writes the model dir (model.pt, previews, run.json) and the DVC plots CSV of its epochs.
Resume checkpoints live in `--work` (outside DVC's outputs): a killed run resumes on the next
`dvc repro`. When `runtime.distributed` asks for more than one process, the command re-runs
itself under torchrun, one process per rank; on the other machines of a multi-node job, the same
command with GENPIPE_NODE_RANK=<n> joins it (`make train-node`).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from genpipe.stages import _cli


def train_stage(args: argparse.Namespace, argv: list[str]) -> None:
    # torch only from here on: _cli.run has set OpenMP's wait policy, which it reads on import
    from torch.distributed.elastic.multiprocessing.errors import record

    from genpipe.config import load_params
    from genpipe.training import distributed
    from genpipe.training.run import TrainPaths, train

    params = load_params(args.params)
    config = params.runtime.distributed
    if distributed.should_launch(config):
        node_rank = int(os.environ.get("GENPIPE_NODE_RANK", "0"))
        module = ["-m", "genpipe.stages.train", *argv]
        command = distributed.torchrun_command(config, node_rank, module)
        sys.stdout.flush()
        os.execv(command[0], command)  # torchrun's exit status becomes the stage's
    paths = TrainPaths(args.prepared, args.out, args.work, args.plots)
    # under torchrun: a failing rank's traceback goes into the job's error summary
    record(train)(args.task, params, paths)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    p = _cli.parser(__doc__ or "")
    p.add_argument("--task", required=True, help="model family: vae, gan or evaluator")
    p.add_argument("--prepared", type=Path, default=Path("data/prepared"))
    p.add_argument("--out", type=Path, required=True, help="model dir (dvc out)")
    p.add_argument("--work", type=Path, required=True, help="resume folder (outside DVC)")
    p.add_argument("--plots", type=Path, default=None, help="per-epoch CSV (dvc plots)")
    args = p.parse_args(argv)
    return _cli.run(f"train_{args.task}", lambda: train_stage(args, argv))


if __name__ == "__main__":
    raise SystemExit(main())
