"""The evaluate stage's body: load models, score generation and restoration, write the outputs.

Protocol: features come from the evaluator classifier; generation is scored against the test
split (the GAN snapshot having been chosen on val), with the real-vs-real floor drawn from
train; restoration runs every corruption x method on the same n_restore test images.
"""

from __future__ import annotations

import csv
import io as textio
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from genpipe import io
from genpipe.config import EvaluateConfig
from genpipe.data.dataset import PreparedData, load_prepared
from genpipe.errors import GenpipeError
from genpipe.evaluation import panels
from genpipe.evaluation.corruptions import corruptions_from_config
from genpipe.evaluation.features import embed, model_sampler, pool_sampler
from genpipe.evaluation.generation import GenerationProtocol, evaluate_source, select_snapshot
from genpipe.evaluation.report import (
    flat_metrics,
    generation_rows,
    protocol_hash,
    restoration_rows,
    summarise_restoration,
    weights_hash,
)
from genpipe.evaluation.restoration_eval import (
    CorruptionResult,
    restoration_subset,
    run_restoration,
)
from genpipe.models.checkpoint import model_from_record, read_record

log = logging.getLogger(__name__)


class EvaluateInputError(GenpipeError):
    """An input of the evaluate stage is missing or inconsistent; the message names the file."""


@dataclass(frozen=True)
class EvaluatePaths:
    prepared: Path
    vae: Path  # data/models/vae
    gan: Path  # data/models/gan
    evaluator: Path  # data/models/evaluator
    out: Path  # data/eval
    metrics: Path  # data/metrics/evaluate.json


@dataclass(frozen=True)
class Evaluation:
    report: dict[str, Any]
    flat: dict[str, float]
    samples: dict[str, Tensor]  # source -> images for the sample grids
    restoration: list[CorruptionResult]
    seconds: dict[str, float]


def read_run(model_dir: Path) -> dict[str, str]:
    path = model_dir / "run.json"
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise EvaluateInputError(
            f"{path}: not found; rerun the stage that trains this model"
        ) from None
    except json.JSONDecodeError as exc:
        raise EvaluateInputError(
            f"{path}: corrupt JSON ({exc}); rerun its training stage"
        ) from None


def gan_candidates(gan_dir: Path) -> dict[str, Path]:
    """The EMA snapshots to choose from; the final model alone when there are none."""
    snaps = sorted((gan_dir / "snapshots").glob("epoch_*.pt"))
    return {p.stem: p for p in snaps} if snaps else {"final": gan_dir / "model.pt"}


def _load(path: Path, kind: str, device: torch.device) -> tuple[nn.Module, dict]:
    record = read_record(path)
    if record["kind"] != kind:
        raise EvaluateInputError(f"{path}: a {record['kind']!r} model, expected {kind!r}")
    return model_from_record(record).to(device), record


def evaluate_models(
    paths: EvaluatePaths, config: EvaluateConfig, device: torch.device | None = None
) -> Evaluation:
    device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
    seconds: dict[str, float] = {}
    start = time.perf_counter()
    data = load_prepared(paths.prepared)
    runs = {"vae": read_run(paths.vae), "gan": read_run(paths.gan)}  # fail before the work
    evaluator, evaluator_record = _load(paths.evaluator / "model.pt", "classifier", device)
    vae, _ = _load(paths.vae / "model.pt", "vae", device)
    for name, model in (("vae", vae), ("evaluator", evaluator)):
        if tuple(model.image_shape) != data.image_shape:
            raise EvaluateInputError(
                f"{name} model expects images {model.image_shape}, {paths.prepared} has "
                f"{data.image_shape}; retrain it on this dataset"
            )
    evaluator_hash = weights_hash(evaluator_record)
    n = config.n_samples or len(data.test)
    if n > len(data.train):
        raise EvaluateInputError(
            f"evaluate.n_samples={n} exceeds the {len(data.train)} train images the real-vs-real "
            "floor draws from; lower evaluate.n_samples"
        )
    test = data.test.as_float(device)
    reference = embed(evaluator, test)

    # GAN: pick the snapshot on val, never on test.
    candidates = gan_candidates(paths.gan)
    generators = {name: _load(p, "generator", device)[0] for name, p in candidates.items()}
    selected, val_fds = select_snapshot(
        {k: model_sampler(g) for k, g in generators.items()},
        evaluator,
        embed(evaluator, data.val.as_float(device)),
        config.snapshot_selection_samples,
        config.seed,
    )
    gan = generators[selected]
    seconds["load_and_select"] = time.perf_counter() - start

    protocol = GenerationProtocol(
        n,
        config.draws,
        config.kid_subset_size,
        config.kid_subsets,
        config.prdc_k,
        config.bootstrap,
        config.seed,
    )
    generation, samples = {}, {}
    sources = {
        "vae": model_sampler(vae),
        "gan": model_sampler(gan),
        "real": pool_sampler(data.train.as_float(device)),
    }
    start = time.perf_counter()
    for source, sampler in sources.items():
        generation[source], first = evaluate_source(sampler, evaluator, reference, protocol)
        samples[source] = first[:64]
    seconds["generation"] = time.perf_counter() - start

    start = time.perf_counter()
    idx = restoration_subset(len(data.test), config.n_restore, config.seed)
    results = run_restoration(
        {"vae": vae, "gan": gan},
        test[idx.to(device)],
        corruptions_from_config(config),
        config.latent_search,
        config.seed,
        config.ssim_window,
    )
    seconds["restoration"] = time.perf_counter() - start

    report = build_report(
        paths,
        config,
        data,
        evaluator_hash,
        runs,
        (candidates[selected], selected),
        generation,
        results,
    )
    report["protocol"].update(n_restore=len(idx), n_samples=n, n_reference=len(data.test))
    flat = flat_metrics(report)
    flat.update({f"selection.gan.{name}.val_fd": round(fd, 6) for name, fd in val_fds.items()})
    return Evaluation(report, flat, samples, results, seconds)


def build_report(
    paths: EvaluatePaths,
    config: EvaluateConfig,
    data: PreparedData,
    evaluator_hash: str,
    runs: dict[str, dict[str, str]],
    gan_selection: tuple[Path, str],
    generation: dict[str, Any],
    results: list[CorruptionResult],
) -> dict[str, Any]:
    return {
        "protocol_hash": protocol_hash(config, data.data_hash, evaluator_hash),
        "protocol": {
            "evaluate": config.model_dump(mode="json"),
            "reference_split": "test",
            "real_floor": "train images (distinct, n_samples per draw) vs test",
            "ci": f"95% percentile bootstrap ({config.bootstrap}) of the mean over "
            f"{config.draws} draws (generation) or over test images (restoration)",
            "snapshot_selection": "lowest FD against the validation split",
            "corruptions": [c.name for c in corruptions_from_config(config)],
            "panel_rows": list(results[0].panel) if results else [],
        },
        "data_hash": data.data_hash,
        "evaluator_hash": evaluator_hash,
        "models": {
            "vae": {"checkpoint": str(paths.vae / "model.pt"), "run_id": runs["vae"].get("run_id")},
            "gan": {
                "checkpoint": str(gan_selection[0]),
                "run_id": runs["gan"].get("run_id"),
                "selected_snapshot": gan_selection[1],
            },
        },
        "generation": generation,
        "restoration": summarise_restoration(results, config.bootstrap, config.seed),
    }


def _csv(rows: list[dict[str, Any]]) -> str:
    buf = textio.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def write_outputs(evaluation: Evaluation, paths: EvaluatePaths) -> None:
    """report.json, flat metrics, DVC plot tables, restoration panels and sample grids."""
    out = paths.out
    io.write_json(out / "report.json", evaluation.report)
    # The hash rides along so `dvc metrics diff` shows when two numbers are not comparable.
    io.write_json(
        paths.metrics, {"protocol_hash": evaluation.report["protocol_hash"], **evaluation.flat}
    )
    io.write_text(out / "plots" / "restoration_psnr.csv", _csv(restoration_rows(evaluation.report)))
    io.write_text(out / "plots" / "generation.csv", _csv(generation_rows(evaluation.report)))
    for result in evaluation.restoration:
        panels.save_panel(out / "panels" / f"{result.corruption.name}.png", result.panel)
    for source, images in evaluation.samples.items():
        panels.save_samples(out / "samples" / f"{source}.png", images)
