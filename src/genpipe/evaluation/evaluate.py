"""Score the VAE and the GAN on generation and restoration under one protocol (pure compute).

Protocol: features come from the evaluator classifier; the GAN snapshot is chosen on the
validation split; generation is scored against the test split, with the real-vs-real floor drawn
from train; restoration runs every corruption x method on the same n_restore test images.
Loading lives in evaluation/inputs.py and writing in evaluation/outputs.py.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import torch
from torch import Tensor

from genpipe.config import EvaluateConfig
from genpipe.evaluation import metrics
from genpipe.evaluation.corruptions import corruptions_from_config
from genpipe.evaluation.features import embed, model_sampler, pool_sampler
from genpipe.evaluation.generation import GenerationProtocol, evaluate_source, select_snapshot
from genpipe.evaluation.inputs import EvaluateInputError, EvaluationInputs
from genpipe.evaluation.report import build_report, flat_metrics
from genpipe.evaluation.restoration_eval import (
    CorruptionResult,
    describe_ssim,
    restoration_subset,
    run_restoration,
)
from genpipe.evaluation.schema import Report

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Evaluation:
    report: Report
    flat: dict[str, float]
    samples: dict[str, Tensor]  # source -> images for the sample grids
    restoration: list[CorruptionResult]
    seconds: dict[str, float]


def generation_protocol(config: EvaluateConfig, n_samples: int) -> GenerationProtocol:
    return GenerationProtocol(
        n_samples,
        config.draws,
        config.kid_subset_size,
        config.kid_subsets,
        config.prdc_k,
        config.bootstrap,
        config.seed,
        config.recognition_confidence,
    )


def evaluate(inputs: EvaluationInputs, config: EvaluateConfig, device: torch.device) -> Evaluation:
    """Score the new VAE and GAN on generation and restoration (the champions are scored beside
    them by genpipe.evaluation.incumbents, under the same protocol)."""
    seconds: dict[str, float] = {}
    data, evaluator = inputs.data, inputs.evaluator.module
    n = config.n_samples or len(data.test)
    if n > len(data.train):
        raise EvaluateInputError(
            f"evaluate.n_samples={n} exceeds the {len(data.train)} train images the real-vs-real "
            "floor draws from; lower evaluate.n_samples"
        )
    start = time.perf_counter()
    test = data.test.as_float(device)
    reference = embed(evaluator, test)
    # GAN: pick the snapshot on val, never on test.
    selected, val_fds = select_snapshot(
        {name: model_sampler(m.module) for name, m in inputs.gan_snapshots.items()},
        evaluator,
        embed(evaluator, data.val.as_float(device)),
        config.snapshot_selection_samples,
        config.seed,
    )
    gan = inputs.gan_snapshots[selected]
    seconds["select_snapshot"] = time.perf_counter() - start

    start = time.perf_counter()
    protocol = generation_protocol(config, n)
    generation, samples = {}, {}
    sources = {
        "vae": model_sampler(inputs.vae.module),
        "gan": model_sampler(gan.module),
        "real": pool_sampler(data.train.as_float(device)),
    }
    for source, sampler in sources.items():
        generation[source], first = evaluate_source(sampler, evaluator, reference, protocol)
        samples[source] = first[:64]
    seconds["generation"] = time.perf_counter() - start

    start = time.perf_counter()
    idx = restoration_subset(len(data.test), config.n_restore, config.seed)
    results = run_restoration(
        {"vae": inputs.vae.module, "gan": gan.module},
        test[idx.to(device)],
        corruptions_from_config(config),
        config.latent_search,
        config.seed,
        config.ssim_window,
        config.ssim_gaussian,
    )
    seconds["restoration"] = time.perf_counter() - start

    report = build_report(inputs, config, (gan, selected), generation, results)
    report["protocol"].update(n_restore=len(idx), n_samples=n, n_reference=len(data.test))
    report["protocol"]["ssim"] = describe_ssim(
        config.ssim_window, config.ssim_gaussian, tuple(test.shape[-2:])
    )
    # what "recognised" reads against: the share of the real test images themselves
    report["reference"] = {
        "split": "test",
        "recognised": metrics.recognition_rate(reference.probs, config.recognition_confidence),
    }
    flat = flat_metrics(report)
    flat.update({f"selection.gan.{name}.val_fd": round(fd, 6) for name, fd in val_fds.items()})
    return Evaluation(Report.model_validate(report), flat, samples, results, seconds)
