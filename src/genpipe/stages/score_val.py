"""DVC stages `score_val@<family>`: one family's generation quality on the validation split.

What tuning compares (`make tune`, `make sweep TARGET=score_val@vae`): the test split stays for
the verdict. Writes a small metrics file (`dvc exp show` columns `val.<family>.fd`, ...).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import time
from pathlib import Path

import torch

from genpipe import io, tracking
from genpipe.config import Params, load_params
from genpipe.errors import GenpipeError
from genpipe.stages import _cli

log = logging.getLogger(__name__)

KIND = {"vae": "vae", "gan": "generator"}


def score_val_stage(params: Params, args: argparse.Namespace) -> None:
    from genpipe import device
    from genpipe.data.dataset import load_prepared
    from genpipe.evaluation.val_score import flat_val_metrics, score_on_val

    started = time.time()
    where = device.select_device(params.runtime.device, device.detect())
    data = load_prepared(args.prepared)
    models = {name: _load(path, KIND[args.family], where) for name, path in _files(args).items()}
    evaluator = _load(args.evaluator / "model.pt", "classifier", where)
    score = score_on_val(models, evaluator, data.val.as_float(where), params.evaluate)
    metrics = flat_val_metrics(args.family, score)
    io.write_json(args.metrics, metrics)
    mine = metrics["val"][args.family]
    log.info("%s on val: FD %.4f (%s)", args.family, mine["fd"], score.selected)
    tracking.record_run(
        tracking.RunRecord(
            stage=f"score_val_{args.family}",
            dataset=data.dataset,
            started=started,
            params={"evaluate": params.evaluate.model_dump(mode="json")},
            metrics={f"val.{k}": v for k, v in tracking.flatten(mine).items() if k != "snapshot"},
            tags={
                "genpipe.data_hash": data.data_hash,
                f"genpipe.train_run_id.{args.family}": _train_run_id(args.model),
                "genpipe.val_snapshot": score.selected,
            },
        )
    )


def _files(args: argparse.Namespace) -> dict[str, Path]:
    """The model files to score: a GAN's EMA snapshots (the best is chosen on val), else one."""
    snapshots = sorted((args.model / "snapshots").glob("epoch_*.pt"))
    if args.family == "gan" and snapshots:
        return {path.stem: path for path in snapshots}
    return {"model": args.model / "model.pt"}


def _load(path: Path, kind: str, where: torch.device) -> torch.nn.Module:
    from genpipe.models.checkpoint import model_from_record, read_record

    record = read_record(path)
    if record["kind"] != kind:
        raise GenpipeError(f"{path}: a {record['kind']!r} model, expected {kind!r}")
    return model_from_record(record).to(where)


def _train_run_id(model_dir: Path) -> str:
    with contextlib.suppress(OSError, ValueError):
        return str(json.loads((model_dir / "run.json").read_text())["run_id"])
    return "unknown"


def main(argv: list[str] | None = None) -> int:
    p = _cli.parser(__doc__ or "")
    p.add_argument("--family", choices=sorted(KIND), required=True)
    p.add_argument("--prepared", type=Path, default=Path("data/prepared"))
    p.add_argument("--model", type=Path, required=True, help="the family's model dir")
    p.add_argument("--evaluator", type=Path, default=Path("data/models/evaluator"))
    p.add_argument("--metrics", type=Path, required=True, help="metrics JSON (git)")
    args = p.parse_args(argv)
    return _cli.run(
        f"score_val@{args.family}", lambda: score_val_stage(load_params(args.params), args)
    )


if __name__ == "__main__":
    raise SystemExit(main())
