"""Assemble data/eval/report.json (genpipe.evaluation.schema.Report), the flat DVC metrics, the
plot tables and the protocol hash. Pure functions of results: no I/O here.

The protocol hash pins what a number means: evaluation settings, test data and evaluator
weights. The registry compares a challenger with the champion only under the same hash.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import torch

from genpipe.config import EvaluateConfig
from genpipe.evaluation import metrics
from genpipe.evaluation.corruptions import corruptions_from_config
from genpipe.evaluation.inputs import EvaluationInputs, ModelFile
from genpipe.evaluation.restoration_eval import BASELINES, CorruptionResult
from genpipe.models.restoration import METHOD_MODEL, METHODS


def protocol_hash(config: EvaluateConfig, data_hash: str, evaluator_hash: str) -> str:
    """sha256 of (evaluate config, test-data hash, evaluator weights hash), canonical JSON."""
    payload = {
        "evaluate": config.model_dump(mode="json"),
        "data_hash": data_hash,
        "evaluator_hash": evaluator_hash,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


INCUMBENT = "incumbent"  # the current champion's output name in restoration
# restoration metrics averaged over every corruption (psnr_masked exists for inpainting only)
MEAN_METRICS = ("psnr", "ssim", "ssim_gaussian")


def build_report(
    inputs: EvaluationInputs,
    config: EvaluateConfig,
    gan_selection: tuple[ModelFile, str],
    generation: dict[str, Any],
    results: list[CorruptionResult],
) -> dict[str, Any]:
    """The report.json document as a dict (genpipe.evaluation.schema.Report validates it)."""
    data, (gan, selected) = inputs.data, gan_selection
    return {
        "protocol_hash": protocol_hash(config, data.data_hash, inputs.evaluator.weights_hash),
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
        "dataset": data.dataset,
        "data_hash": data.data_hash,
        "evaluator_hash": inputs.evaluator.weights_hash,
        "evaluator_accuracy": inputs.evaluator.meta.get("test_accuracy"),
        "models": {
            "vae": {
                "checkpoint": str(inputs.vae.path),
                "weights_hash": inputs.vae.weights_hash,
                "run_id": inputs.train_runs["vae"],
            },
            "gan": {
                "checkpoint": str(gan.path),
                "weights_hash": gan.weights_hash,
                "run_id": inputs.train_runs["gan"],
                "selected_snapshot": selected,
            },
        },
        "generation": generation,
        "restoration": summarise_restoration(results, config.bootstrap, config.seed),
    }


def _stat(values: torch.Tensor, bootstrap: int, generator: torch.Generator) -> dict[str, Any]:
    mean, lo, hi = metrics.mean_ci(values, bootstrap, generator)
    return {"value": mean, "ci": [lo, hi]}


def summarise_output(
    name: str, results: list[CorruptionResult], bootstrap: int, generator: torch.Generator
) -> dict[str, Any]:
    """{"mean": {psnr, ssim, ssim_gaussian?}, "per_corruption": {c: {psnr, ssim, ssim_gaussian?,
    psnr_masked?}}} for one method (ssim_gaussian where its window fits the images)."""
    per_corruption = {
        r.corruption.name: {m: _stat(v, bootstrap, generator) for m, v in r.scores[name].items()}
        for r in results
    }
    mean = {}
    for m in MEAN_METRICS:  # each image's average over corruptions, then a CI over images
        if m not in results[0].scores[name]:
            continue
        per_image = torch.stack([r.scores[name][m] for r in results]).mean(dim=0)  # [N]
        mean[m] = _stat(per_image, bootstrap, generator)
    return {"mean": mean, "per_corruption": per_corruption}


def summarise_restoration(
    results: list[CorruptionResult], bootstrap: int, seed: int
) -> dict[str, Any]:
    """The report's "restoration" section: per model its methods and best method, plus baselines."""
    gen = torch.Generator().manual_seed(seed)
    done = [m for m in METHODS if results and m in results[0].scores]
    section: dict[str, Any] = {}
    for model in ("vae", "gan"):
        methods = {
            m: summarise_output(m, results, bootstrap, gen)
            for m in done
            if METHOD_MODEL[m] == model
        }
        if methods:
            best = max(methods, key=lambda m: methods[m]["mean"]["psnr"]["value"])
            section[model] = {"best_method": best, "methods": methods}
    section["baselines"] = {b: summarise_output(b, results, bootstrap, gen) for b in BASELINES}
    return section


def _with_ci(flat: dict[str, float], key: str, stat: dict[str, Any]) -> None:
    flat[key] = stat["value"]
    if stat.get("ci") is not None:
        flat[f"{key}_ci_low"], flat[f"{key}_ci_high"] = stat["ci"]


def flat_metrics(report: dict[str, Any]) -> dict[str, float]:
    """Flat keys for `dvc metrics show/diff`, e.g. generation.gan.fd, restoration.vae.mean_psnr."""
    flat: dict[str, float] = {}
    for source, scores in report["generation"].items():
        for metric, stat in scores.items():
            _with_ci(flat, f"generation.{source}.{metric}", stat)
    if "reference" in report:
        flat["generation.reference.recognised"] = report["reference"]["recognised"]
    restoration = report["restoration"]
    for model in ("vae", "gan"):
        if model not in restoration:
            continue
        best = restoration[model]["methods"][restoration[model]["best_method"]]
        for m, stat in best["mean"].items():
            _with_ci(flat, f"restoration.{model}.mean_{m}", stat)
        for corruption, scores in best["per_corruption"].items():
            for m, stat in scores.items():
                flat[f"restoration.{model}.{corruption}.{m}"] = stat["value"]
        for method, summary in restoration[model]["methods"].items():
            flat[f"restoration.{model}.{method}.mean_psnr"] = summary["mean"]["psnr"]["value"]
    for baseline, summary in restoration["baselines"].items():
        for m, stat in summary["mean"].items():
            flat[f"restoration.baseline.{baseline}.mean_{m}"] = stat["value"]
        for corruption, scores in summary["per_corruption"].items():
            flat[f"restoration.baseline.{baseline}.{corruption}.psnr"] = scores["psnr"]["value"]
    return {k: round(float(v), 6) for k, v in flat.items()}


def restoration_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Long table for the DVC bar plot: one row per (corruption, method or baseline)."""
    restoration = report["restoration"]
    outputs = {b: s for b, s in restoration["baselines"].items()}
    for model in ("vae", "gan"):
        outputs.update(restoration.get(model, {}).get("methods", {}))
    rows = []
    for name, summary in outputs.items():
        for corruption, scores in summary["per_corruption"].items():
            row = {"case": f"{corruption} | {name}", "corruption": corruption, "method": name}
            row.update({m: round(s["value"], 4) for m, s in scores.items() if m in MEAN_METRICS})
            rows.append(row)
    return rows


def generation_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per source (vae, gan, real) with each metric's value and CI."""
    rows = []
    for source, scores in report["generation"].items():
        row: dict[str, Any] = {"source": source}
        for metric, stat in scores.items():
            row[metric] = round(stat["value"], 6)
        rows.append(row)
    return rows
