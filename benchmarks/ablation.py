"""One row of the ablation tables (docs/results.md): train a family variant, score its snapshots on val.

    .venv/bin/python -m benchmarks.ablation --family gan --epochs 14 17 20 \
        -S gan.lr.generator=0.0004 -S gan.lr.discriminator=0.0008 [--out data/ablation/NAME]

Run it after `make pipeline` or `make pipeline-mnist`: it copies the workspace's params.yaml,
applies the `-S` overrides exactly as `dvc exp run -S` does, trains the family once on the
workspace's prepared data (its MLflow runs go to <out>/mlflow.db), saves the exported model at
each listed epoch (the VAE with its sampling prior fitted then, the GAN's EMA generator), and
scores every snapshot on the **validation** split in the pipeline evaluator's feature space: FD
and the recognised share, as means over `--draws` draws of len(val) samples (the same latents'
seed for every snapshot). Test images are never used, so choosing a variant here keeps the
verdict's test figures honest.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import time
from pathlib import Path
from typing import Any

import torch

from benchmarks.compute_matched import install_snapshots
from benchmarks.own_store import use_own_store


def score(
    path: Path, evaluator: torch.nn.Module, reference: Any, draws: int, confidence: float
) -> dict:
    """Mean FD against `reference` (the embedded val split) and recognised share over `draws`
    draws of as many samples."""
    from genpipe.evaluation import metrics
    from genpipe.evaluation.features import embed, model_sampler
    from genpipe.models.checkpoint import load_model

    model = load_model(path)
    generator = torch.Generator().manual_seed(0)
    fds, recognised = [], []
    for _ in range(draws):
        fake = embed(evaluator, model_sampler(model)(len(reference), generator))
        fds.append(metrics.frechet_distance(reference.features, fake.features))
        recognised.append(metrics.recognition_rate(fake.probs, confidence))
    return {"fd": sum(fds) / draws, "recognised": sum(recognised) / draws}


def main() -> None:
    from genpipe.overrides import apply_overrides

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--family", choices=["vae", "gan"], required=True)
    ap.add_argument("--epochs", type=int, nargs="+", required=True, help="epochs to snapshot")
    ap.add_argument("-S", "--set", dest="overrides", action="append", default=[])
    ap.add_argument("--draws", type=int, default=3)
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    ap.add_argument("--prepared", type=Path, default=Path("data/prepared"))
    ap.add_argument("--evaluator", type=Path, default=Path("data/models/evaluator/model.pt"))
    ap.add_argument("--out", type=Path, default=None, help="default data/ablation/<family>")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    out = args.out or Path("data/ablation") / args.family
    use_own_store(out)
    from genpipe.config import load_params
    from genpipe.data.dataset import load_prepared
    from genpipe.evaluation.features import embed
    from genpipe.models.checkpoint import load_model
    from genpipe.training.run import TrainPaths, train

    params_path = out / "params.yaml"
    shutil.copyfile(args.params, params_path)
    apply_overrides(params_path, args.overrides)
    params = load_params(params_path)
    folder = out / "snapshots"
    install_snapshots({args.family: set(args.epochs)}, folder)
    started = time.perf_counter()
    train(args.family, params, TrainPaths(args.prepared, out / "model", out / "work"))
    seconds = time.perf_counter() - started
    evaluator = load_model(args.evaluator)
    reference = embed(evaluator, load_prepared(args.prepared).val.as_float())
    print(
        f"{args.family} {' '.join(args.overrides) or '(params.yaml)'}: trained in {seconds:.0f} s"
    )
    for epoch in sorted(args.epochs):
        scores = score(
            folder / args.family / f"epoch_{epoch:04d}.pt",
            evaluator,
            reference,
            args.draws,
            params.evaluate.recognition_confidence,
        )
        print(
            f"  epoch {epoch:4d}: val FD {scores['fd']:.3f}  recognised {scores['recognised']:.3f}"
        )


if __name__ == "__main__":
    main()
