"""Score each task's champion beside report.json, under its protocol (the score_champions stage).

A champion with the weights of a new candidate is not scored again: its numbers are that
candidate's in the report. That is the common case, right after this checkout promoted it, so
the `dvc repro` after a promotion costs no model run. Any other champion is loaded from its
files and scored as evaluate scores the candidates: the same reference and restoration images,
seeds and metrics (its restoration CI bootstraps with its own generator, seeded alike).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import torch

from genpipe.config import EvaluateConfig
from genpipe.data.dataset import PreparedData
from genpipe.evaluation.corruptions import corruptions_from_config
from genpipe.evaluation.evaluate import generation_protocol
from genpipe.evaluation.features import embed, model_sampler
from genpipe.evaluation.generation import evaluate_source
from genpipe.evaluation.report import INCUMBENT, summarise_output
from genpipe.evaluation.restoration_eval import restoration_subset, run_restoration
from genpipe.evaluation.schema import (
    Family,
    Incumbent,
    Incumbents,
    Report,
    Scores,
    Stat,
    Task,
    TaskIncumbent,
)
from genpipe.models.checkpoint import CheckpointError, model_from_record, read_record, weights_hash
from genpipe.models.restoration import METHOD_MODEL
from genpipe.registry.schema import Champions, ChampionVersion

log = logging.getLogger(__name__)


def same_as(report: Report, champion: ChampionVersion) -> Family | None:
    """The new candidate whose weights the champion has, if any."""
    for family, entry in report.models.items():
        if champion.weights_hash is not None and entry.weights_hash == champion.weights_hash:
            return family
    return None


def reused_scores(report: Report, task: Task, family: Family, method: str | None) -> Scores:
    """The candidate's numbers for the champion with its weights (restoration: its method)."""
    if task == "generation":
        return report.generation[family]
    node = report.restoration.family(family)
    return node.methods[method or node.best_method].mean


def score_incumbents(
    report: Report,
    snapshot: Champions,
    data: PreparedData,
    evaluator: torch.nn.Module,
    config: EvaluateConfig,
    device: torch.device,
    fetch: Callable[[ChampionVersion], Path],
) -> Incumbents:
    """Each task's champion with its scores (or why it could not be scored); `fetch` downloads
    a champion's genpipe model file."""
    tasks = {}
    for task, held in snapshot.tasks.items():
        champion = held.champion
        entry = None
        if champion is not None:
            entry = _score(report, task, champion, data, evaluator, config, device, fetch)
        tasks[task] = TaskIncumbent(champion=entry, rolled_back=held.rolled_back)
    return Incumbents(protocol_hash=report.protocol_hash, tasks=tasks)


def _score(
    report: Report,
    task: Task,
    champion: ChampionVersion,
    data: PreparedData,
    evaluator: torch.nn.Module,
    config: EvaluateConfig,
    device: torch.device,
    fetch: Callable[[ChampionVersion], Path],
) -> Incumbent:
    family = same_as(report, champion)
    scores, problem, weights = None, None, champion.weights_hash
    if family is not None and (task == "generation" or champion.method is not None):
        scores = reused_scores(report, task, family, champion.method)
    else:
        try:
            record = read_record(fetch(champion))
            module = model_from_record(record).to(device).eval()
            weights = weights_hash(record)
        except (CheckpointError, OSError, KeyError, ValueError) as exc:
            problem = f"its model files are unreadable ({exc})"
        else:
            problem = _unfit(module, task, champion, data)
            if problem is None:
                scores = _run(module, task, champion, data, evaluator, config, device)
    log.info(
        "%s: champion v%s %s",
        task,
        champion.version,
        f"= the new {family}" if family else ("scored" if scores else f"not scored: {problem}"),
    )
    return Incumbent(
        version=champion.version,
        candidate_id=champion.candidate_id or f"v{champion.version}",
        family=champion.family or "?",
        method=champion.method,
        weights_hash=weights,
        registered_by=champion.registered_by,
        scored=scores is not None,
        reason=problem,
        same_as=family,
        scores=scores or {},
    )


def _unfit(
    module: torch.nn.Module, task: Task, champion: ChampionVersion, data: PreparedData
) -> str | None:
    """Why this champion cannot be scored on this data, if it cannot."""
    shape = tuple(module.image_shape)  # type: ignore[arg-type]
    if shape != tuple(data.image_shape):
        return f"it expects images {shape}, the data has {tuple(data.image_shape)}"
    if task == "restoration" and METHOD_MODEL.get(champion.method or "") != champion.family:
        return f"its method {champion.method!r} does not fit a {champion.family} model"
    return None


def _run(
    module: torch.nn.Module,
    task: Task,
    champion: ChampionVersion,
    data: PreparedData,
    evaluator: torch.nn.Module,
    config: EvaluateConfig,
    device: torch.device,
) -> Scores:
    """The champion's numbers under the protocol evaluate used for the candidates."""
    test = data.test.as_float(device)
    if task == "generation":
        protocol = generation_protocol(config, config.n_samples or len(data.test))
        scores, _ = evaluate_source(
            model_sampler(module), evaluator, embed(evaluator, test), protocol
        )
        return {metric: Stat(**stat) for metric, stat in scores.items()}
    idx = restoration_subset(len(data.test), config.n_restore, config.seed)
    results = run_restoration(
        {},
        test[idx.to(device)],
        corruptions_from_config(config),
        config.latent_search,
        config.seed,
        config.ssim_window,
        config.ssim_gaussian,
        {INCUMBENT: (module, champion.method or "")},
    )
    generator = torch.Generator().manual_seed(config.seed)
    summary = summarise_output(INCUMBENT, results, config.bootstrap, generator)
    return {metric: Stat(**stat) for metric, stat in summary["mean"].items()}
