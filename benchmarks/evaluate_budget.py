"""Wall time of the `evaluate` stage on the digits default (goal <= 60 s on 2 cores).

    .venv/bin/python -m benchmarks.evaluate_budget [--params params.yaml] [--repeats 2] [--record]

The cost is set by the architectures and the evaluate params, not by trained weights (latent
search runs a fixed number of steps), so the models are freshly initialised from params.yaml's
`vae`, `gan` and `evaluator` sections with gan.snapshots snapshots. Digits are prepared in a
temp folder; nothing is downloaded. Prints the stage's phases and the total, including the
MLflow logging (into a temporary SQLite store).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks import records


def save_fresh_models(models: Path, params, shape: tuple[int, int, int], n_classes: int) -> None:
    """data/models/{vae,gan,evaluator} freshly initialised from `params`, with run.json files."""
    from genpipe.models import save_model
    from genpipe.models.classifier import Classifier
    from genpipe.models.gan import Generator
    from genpipe.models.vae import VAE

    save_model(models / "vae/model.pt", VAE(params.vae, shape), "vae")
    gan = Generator(params.gan, shape)
    save_model(models / "gan/model.pt", gan, "generator")
    for k in range(params.gan.snapshots):
        save_model(models / f"gan/snapshots/epoch_{k + 1:04d}.pt", gan, "generator")
    evaluator = Classifier(params.evaluator, shape, n_classes=n_classes)
    save_model(models / "evaluator/model.pt", evaluator, "classifier", n_classes=n_classes)
    for name in ("vae", "gan"):
        run = {"run_id": "", "experiment_id": "", "experiment_name": "genpipe-benchmark"}
        (models / name / "run.json").write_text(json.dumps(run))


def build_inputs(root: Path, params_path: Path) -> None:
    """data/prepared (digits 70/15/15) and data/models/{vae,gan,evaluator} with run.json."""
    from sklearn.datasets import load_digits

    from genpipe.config import load_params
    from genpipe.data.dataset import Split, save_prepared

    params = load_params(params_path)
    d = load_digits()
    images = np.round(d.images * (255 / 16)).astype(np.uint8)[:, None]
    labels = d.target.astype(np.int64)
    idx = np.random.default_rng(0).permutation(len(labels))
    cut1, cut2 = int(0.7 * len(idx)), int(0.85 * len(idx))
    parts = {"train": idx[:cut1], "val": idx[cut1:cut2], "test": idx[cut2:]}
    splits = {k: Split(images[i], labels[i]) for k, i in parts.items()}
    classes = [str(i) for i in range(10)]
    save_prepared(root / "data/prepared", splits, {"dataset": "digits", "classes": classes})
    save_fresh_models(root / "data/models", params, (1, 8, 8), n_classes=10)


def evaluate_command(params_path: Path) -> list[str]:
    """The evaluate stage's command line from dvc.yaml, run from a folder holding data/."""
    return [
        sys.executable, "-m", "genpipe.stages.evaluate", "--params", str(params_path),
        "--prepared", "data/prepared", "--vae", "data/models/vae", "--gan", "data/models/gan",
        "--evaluator", "data/models/evaluator", "--out", "data/eval",
        "--plots", "data/plots",
    ]  # fmt: skip


def store_env(root: Path) -> dict[str, str]:
    """A throwaway SQLite tracking store and artifact root under `root`."""
    return {
        **os.environ,
        "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}",
        "GENPIPE_ARTIFACT_ROOT": str(root / "artifacts"),
    }


def phases(stderr: str) -> str:
    """The stage's own per-phase timing line ("load_and_select 3.1s, generation ...")."""
    found = re.findall(r"evaluate: protocol \w+, (.*) \(MLflow run", stderr)
    return found[-1] if found else ""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    ap.add_argument("--repeats", type=int, default=2)
    records.add_argument(ap)
    args = ap.parse_args()
    walls = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        build_inputs(root, args.params.resolve())
        env = store_env(root)
        cmd = evaluate_command(args.params.resolve())
        for repeat in range(args.repeats):
            start, cpu = time.perf_counter(), os.times()
            out = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True)
            wall = time.perf_counter() - start
            after = os.times()
            if out.returncode != 0:
                sys.exit(f"evaluate failed:\n{out.stderr[-3000:]}")
            user = after.children_user - cpu.children_user
            print(f"run {repeat + 1}: wall {wall:.1f} s, CPU {user:.1f} s (goal <= 60 s wall)")
            print(f"  {phases(out.stderr)}")
            walls.append((wall, user))
    row = {
        "compares": "the `evaluate` stage on digits, wall time (fresh models of params.yaml's shapes)",
        "result": "; ".join(f"wall {w:.1f} s (CPU {u:.1f} s)" for w, u in walls),
        "goal": "≤ 60 s",
        "met": max(w for w, _ in walls) <= 60,
    }
    records.write(args.record, [row])


if __name__ == "__main__":
    main()
