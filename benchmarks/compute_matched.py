"""Does the winner change at any training budget? FD and denoising PSNR against images seen.

    .venv/bin/python -m benchmarks.compute_matched [--epochs-vae 1 2 5 ...] [--out data/compute]

Run it after `make pipeline` (or pipeline-mnist): it trains the VAE and the GAN once more with
the workspace's params.yaml, saving each at the listed epochs (the VAE with its sampling prior
fitted then, as export does; the GAN's EMA generator), and scores every snapshot on the
**validation** split in the pipeline evaluator's feature space: FD of len(val) samples (one
draw, the same latents' seed for every snapshot), and PSNR at sigma 0.3 on the first
`--n-restore` val images with each family's latent search. The x axis is training images seen
(steps x batch; a GAN image also costs a D and a G pass, so equal images is not equal FLOPs).

Writes docs/compute_matched/<dataset>/{vae,gan,classical}.csv (one line each in the plot) and
docs/img/compute_matched_<dataset>.png; snapshots go to <out>/snapshots/, MLflow runs to
<out>/mlflow.db. The tables are git-tracked, not a stage's outputs (a stage would retrain both
models on every repro): dvc.yaml's top-level plots "compute-matched <dataset>: ..." draw them
(`make plots`, `dvc plots show`). Those plots list only datasets whose tables are committed (for
a missing file DVC warns "failed to load some plots" and leaves the chart out): after a first run
on a new dataset, commit its tables and add its two plots to dvc.yaml, as for digits.
"""

from __future__ import annotations

import argparse
import copy
import csv
import io as textio
import logging
from pathlib import Path
from typing import Any

import torch

from benchmarks.own_store import use_own_store
from genpipe import io
from genpipe.config import Params, load_params

FAMILY_KIND = {"vae": "vae", "gan": "generator"}
# each family's table: what the DVC plots draw against images_seen
FAMILY_COLUMNS = ("epoch", "images_seen", "fd", "psnr_sigma0.3")


def install_snapshots(epochs: dict[str, set[int]], folder: Path) -> None:
    """Make each family's task save its exportable model at the listed epochs (after the step)."""
    from genpipe.models.checkpoint import save_model
    from genpipe.training.task import get_task

    for family, wanted in epochs.items():
        cls = get_task(family)
        original = cls.end_epoch

        def end_epoch(self, epoch: int, _orig=original, _wanted=wanted, _family=family) -> None:
            _orig(self, epoch)
            if epoch not in _wanted:
                return
            if _family == "vae":
                model = copy.deepcopy(self.model).eval()
                model.fit_prior(self.train_split.as_float(self.runtime.device), self.seed)
            else:
                model = self.ema
            path = folder / _family / f"epoch_{epoch:04d}.pt"
            save_model(path, model, FAMILY_KIND[_family], {"epoch": epoch})

        cls.end_epoch = end_epoch


def score_snapshot(
    path: Path, evaluator: Any, val: torch.Tensor, params: Params, n_restore: int
) -> dict[str, float]:
    from genpipe.evaluation import metrics
    from genpipe.evaluation.corruptions import Corruption
    from genpipe.evaluation.features import embed, model_sampler
    from genpipe.evaluation.restoration_eval import run_corruption
    from genpipe.models.checkpoint import load_model

    model = load_model(path)
    e = params.evaluate
    images = model_sampler(model)(len(val), torch.Generator().manual_seed(e.seed))
    fd = metrics.frechet_distance(embed(evaluator, val).features, embed(evaluator, images).features)
    family = "vae" if path.parent.name == "vae" else "gan"
    result = run_corruption(
        {family: model},
        val[:n_restore],
        Corruption("denoise_sigma0.3", "noise", 0.3),
        e.latent_search,
        e.seed,
        e.ssim_window,
    )
    method = f"{family}_latent_search"
    return {
        "fd": fd,
        "psnr_sigma0.3": float(result.scores[method]["psnr"].mean()),
        "psnr_classical": float(result.scores["classical"]["psnr"].mean()),
    }


def tables(rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """One table per family (one line each in the DVC plots), and the classical filter's PSNR on
    the same val images at every budget scored: it does not train, so it is a flat reference."""
    out = {
        family: [{k: r[k] for k in FAMILY_COLUMNS} for r in rows if r["family"] == family]
        for family in FAMILY_KIND
    }
    classical: dict[int, float] = {}
    for r in sorted(rows, key=lambda r: r["images_seen"]):
        classical.setdefault(r["images_seen"], r["psnr_classical"])
    out["classical"] = [{"images_seen": x, "psnr_sigma0.3": v} for x, v in classical.items()]
    return out


def write_tables(rows: list[dict[str, Any]], folder: Path) -> list[Path]:
    """<folder>/{vae,gan,classical}.csv, floats to 4 decimals, each written atomically."""
    written = []
    for name, table in tables(rows).items():
        buf = textio.StringIO()
        writer = csv.DictWriter(buf, fieldnames=list(table[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(
            {k: round(v, 4) if isinstance(v, float) else v for k, v in r.items()} for r in table
        )
        io.write_text(folder / f"{name}.csv", buf.getvalue())
        written.append(folder / f"{name}.csv")
    return written


def plot(rows: list[dict[str, Any]], dataset: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_fd, ax_psnr) = plt.subplots(1, 2, figsize=(9, 3.4))
    for family, style in (("vae", "o-"), ("gan", "s-")):
        mine = [r for r in rows if r["family"] == family]
        x = [r["images_seen"] for r in mine]
        ax_fd.plot(x, [r["fd"] for r in mine], style, label=family.upper())
        ax_psnr.plot(x, [r["psnr_sigma0.3"] for r in mine], style, label=family.upper())
    classical = rows[0]["psnr_classical"]
    ax_psnr.axhline(classical, color="grey", ls="--", label="classical filter")
    for ax, label in ((ax_fd, "FD on val (lower is better)"), (ax_psnr, "PSNR σ=0.3, dB")):
        ax.set_xscale("log")
        ax.set_xlabel("training images seen")
        ax.set_ylabel(label)
        ax.legend()
    ax_fd.set_yscale("log")
    fig.suptitle(f"{dataset}: quality against training compute (images seen)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    ap.add_argument("--prepared", type=Path, default=Path("data/prepared"))
    ap.add_argument("--evaluator", type=Path, default=Path("data/models/evaluator/model.pt"))
    ap.add_argument("--epochs-vae", type=int, nargs="+", default=[1, 2, 5, 10, 20, 40, 60])
    ap.add_argument("--epochs-gan", type=int, nargs="+", default=[1, 2, 5, 10, 20, 40, 70, 100])
    ap.add_argument("--n-restore", type=int, default=64)
    ap.add_argument("--out", type=Path, default=Path("data/compute"))
    ap.add_argument(
        "--tables", type=Path, default=None, help="default docs/compute_matched/<dataset>/"
    )
    ap.add_argument(
        "--png", type=Path, default=None, help="default docs/img/compute_matched_<dataset>.png"
    )
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    use_own_store(args.out)
    from genpipe.data.dataset import load_prepared
    from genpipe.models.checkpoint import load_model
    from genpipe.training.run import TrainPaths, train

    params = load_params(args.params)
    data = load_prepared(args.prepared)
    wanted = {"vae": set(args.epochs_vae), "gan": set(args.epochs_gan)}
    folder = args.out / "snapshots"
    install_snapshots(wanted, folder)
    batch = {
        "vae": params.vae.batch_size or params.train.batch_size,
        "gan": params.gan.batch_size or params.train.batch_size,
    }
    for family in ("vae", "gan"):
        if not all((folder / family / f"epoch_{e:04d}.pt").exists() for e in wanted[family]):
            root = args.out / family
            train(family, params, TrainPaths(args.prepared, root / "model", root / "work"))
    evaluator = load_model(args.evaluator)
    val = data.val.as_float()
    rows = []
    for family in ("vae", "gan"):
        per_epoch = (len(data.train) // batch[family]) * batch[family]  # drop_last
        for epoch in sorted(wanted[family]):
            path = folder / family / f"epoch_{epoch:04d}.pt"
            scores = score_snapshot(path, evaluator, val, params, args.n_restore)
            rows.append(
                {"family": family, "epoch": epoch, "images_seen": epoch * per_epoch, **scores}
            )
            logging.info("%s epoch %d: %s", family, epoch, scores)
    write_tables(rows, args.tables or Path("docs/compute_matched") / data.dataset)
    plot(rows, data.dataset, args.png or Path(f"docs/img/compute_matched_{data.dataset}.png"))
    for r in rows:
        print(
            f"{r['family']} epoch {r['epoch']:4d} images {r['images_seen']:8d} "
            f"FD {r['fd']:7.3f} PSNR {r['psnr_sigma0.3']:.2f} dB"
        )


if __name__ == "__main__":
    main()
