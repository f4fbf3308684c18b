"""Score one family's model on the validation split: what tuning compares (pure compute).

Tuning chooses between configurations, so it must never see the test split: that stays for the
verdict. The protocol is evaluate's generation protocol (the same evaluator features, draws and
CIs), with val as the reference set. A GAN's snapshot is chosen on val as evaluate chooses it,
and every snapshot's selection FD is kept, so one training reports quality at several epochs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import Tensor, nn

from genpipe.config import EvaluateConfig
from genpipe.evaluation.features import embed, model_sampler
from genpipe.evaluation.generation import GenerationProtocol, evaluate_source, select_snapshot
from genpipe.models.classifier import Classifier


@dataclass(frozen=True)
class ValScore:
    generation: dict[str, dict[str, Any]]  # metric -> {"value", "ci"} against the val split
    selected: str  # the snapshot scored ("model" for a single model)
    snapshot_fds: dict[str, float]  # snapshot -> its selection FD on val (GAN only)


def val_protocol(config: EvaluateConfig, n_val: int) -> GenerationProtocol:
    """evaluate's protocol with as many samples per draw as val has (or evaluate.n_samples)."""
    return GenerationProtocol(
        min(config.n_samples or n_val, n_val),
        config.draws,
        config.kid_subset_size,
        config.kid_subsets,
        config.prdc_k,
        config.bootstrap,
        config.seed,
        config.recognition_confidence,
    )


def score_on_val(
    models: dict[str, nn.Module], evaluator: Classifier, val: Tensor, config: EvaluateConfig
) -> ValScore:
    """models: one model, or a GAN's snapshots by name (the best on val is scored in full)."""
    reference = embed(evaluator, val)
    samplers = {name: model_sampler(model) for name, model in models.items()}
    snapshot_fds: dict[str, float] = {}
    selected = next(iter(samplers))
    if len(samplers) > 1:
        selected, snapshot_fds = select_snapshot(
            samplers, evaluator, reference, config.snapshot_selection_samples, config.seed
        )
    scores, _ = evaluate_source(
        samplers[selected], evaluator, reference, val_protocol(config, len(val))
    )
    return ValScore(scores, selected, snapshot_fds)


def flat_val_metrics(family: str, score: ValScore) -> dict[str, Any]:
    """The metrics file `dvc exp show` reads: {"val": {family: {fd, fd_ci_low, ...}}}."""
    out: dict[str, Any] = {}
    for metric, node in score.generation.items():
        out[metric] = round(node["value"], 4)
        if node["ci"] is not None and metric == "fd":
            out["fd_ci_low"], out["fd_ci_high"] = (round(v, 4) for v in node["ci"])
    if score.snapshot_fds:
        out["snapshot"] = score.selected
        out["snapshot_fd"] = {k: round(v, 4) for k, v in score.snapshot_fds.items()}
    return {"val": {family: out}}
