"""Train the evaluator classifier whose penultimate features define the generation-metric space.

Deterministic by construction: one seed drives initialisation, dropout, shuffling and the
augmentation shifts, and the weights kept are those of the best validation epoch, so the same
data and params give the same weights (and so the same protocol hash) on the same machine.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from genpipe import io
from genpipe.config import EvaluatorConfig
from genpipe.data.dataset import PreparedData, load_prepared
from genpipe.errors import GenpipeError
from genpipe.models import save_model
from genpipe.models.classifier import Classifier
from genpipe.tracking import tracked_run

log = logging.getLogger(__name__)


class EvaluatorAccuracyError(GenpipeError):
    """The evaluator classifier is not accurate enough for its features to be trusted."""


@dataclass(frozen=True)
class EvaluatorResult:
    model: Classifier
    val_accuracy: float
    test_accuracy: float
    best_epoch: int
    history: list[dict[str, float]]


@torch.no_grad()
def accuracy(
    model: Classifier, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 1024
) -> float:
    """Top-1 accuracy in eval mode, batched."""
    model.eval()
    correct = 0
    for i in range(0, len(labels), batch_size):
        logits = model(images[i : i + batch_size])
        correct += int((logits.argmax(1) == labels[i : i + batch_size]).sum())
    return correct / max(len(labels), 1)


def random_shift(x: torch.Tensor, generator: torch.Generator, max_shift: int = 1) -> torch.Tensor:
    """Translate each image by up to `max_shift` pixels (zero fill): cheap, label-preserving."""
    n, c, h, w = x.shape
    pad = F.pad(x, (max_shift,) * 4)  # [N, C, H+2s, W+2s]
    dy, dx = torch.randint(0, 2 * max_shift + 1, (2, n), generator=generator).to(x.device)
    rows = (dy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]  # [N, 1, H, 1]
    cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, None, :]  # [N, 1, 1, W]
    batch = torch.arange(n, device=x.device)[:, None, None, None]
    chan = torch.arange(c, device=x.device)[None, :, None, None]
    return pad[batch, chan, rows, cols]  # [N, C, H, W]


def train_classifier(
    data: PreparedData,
    config: EvaluatorConfig,
    device: torch.device | str = "cpu",
    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
) -> EvaluatorResult:
    """Train on the train split, keep the best epoch on val, report accuracy on test."""
    torch.manual_seed(config.seed)
    gen = torch.Generator().manual_seed(config.seed)
    x_train, y_train = data.train.as_float(device), torch.from_numpy(data.train.labels).to(device)
    x_val, y_val = data.val.as_float(device), torch.from_numpy(data.val.labels).to(device)
    model = Classifier(config, data.image_shape, n_classes=len(data.classes)).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=1e-4)
    steps_per_epoch = -(-len(y_train) // config.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=config.lr, total_steps=config.epochs * steps_per_epoch
    )
    best = (-1.0, 0, {k: v.clone() for k, v in model.state_dict().items()})
    history: list[dict[str, float]] = []
    for epoch in range(1, config.epochs + 1):
        model.train()
        order = torch.randperm(len(y_train), generator=gen).to(device)
        total = 0.0
        for i in range(0, len(order), config.batch_size):
            idx = order[i : i + config.batch_size]
            xb = random_shift(x_train[idx], gen) if config.augment else x_train[idx]
            loss = F.cross_entropy(model(xb), y_train[idx], label_smoothing=0.05)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
        val_acc = accuracy(model, x_val, y_val)
        row = {"train_loss": total / len(y_train), "val_accuracy": val_acc}
        history.append(row)
        if on_epoch is not None:
            on_epoch(epoch, row)
        if val_acc > best[0]:
            best = (val_acc, epoch, {k: v.clone() for k, v in model.state_dict().items()})
    model.load_state_dict(best[2])
    model.eval()
    test_acc = accuracy(
        model, data.test.as_float(device), torch.from_numpy(data.test.labels).to(device)
    )
    log.info(
        "evaluator: best epoch %d, val accuracy %.4f, test accuracy %.4f",
        best[1],
        best[0],
        test_acc,
    )
    return EvaluatorResult(model.cpu(), best[0], test_acc, best[1], history)


def check_accuracy(result: EvaluatorResult, config: EvaluatorConfig) -> None:
    """Fail the stage: metrics in a feature space that cannot tell digits apart mislead."""
    if result.test_accuracy < config.min_test_accuracy:
        raise EvaluatorAccuracyError(
            f"evaluator test accuracy {result.test_accuracy:.4f} is below "
            f"evaluator.min_test_accuracy={config.min_test_accuracy:g} (params.yaml). Train longer "
            "(evaluator.epochs), adjust evaluator.lr, or check data/prepared for label noise."
        )


def train_evaluator_stage(
    prepared: Path, out: Path, metrics_path: Path, config: EvaluatorConfig
) -> EvaluatorResult:
    """Train, log to MLflow, check the accuracy floor, then write the model and metrics."""
    import mlflow

    data = load_prepared(prepared)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    tags = {
        "genpipe.stage": "train_evaluator",
        "genpipe.data_hash": data.data_hash,
        "genpipe.device": device,
    }
    experiment = f"genpipe-{data.meta.get('dataset', 'unknown')}"
    params = {"evaluator": config.model_dump(mode="json")}
    with tracked_run(experiment, "train_evaluator", params=params, tags=tags) as run:
        result = train_classifier(
            data, config, device, lambda e, row: mlflow.log_metrics(row, step=e)
        )
        scores = {"test_accuracy": result.test_accuracy, "val_accuracy": result.val_accuracy}
        mlflow.log_metrics({**scores, "best_epoch": result.best_epoch})
        check_accuracy(result, config)  # before any output exists: DVC keeps nothing on failure
        meta = {**scores, "best_epoch": result.best_epoch, "data_hash": data.data_hash}
        save_model(out / "model.pt", result.model, "classifier", meta, n_classes=len(data.classes))
        io.write_json(
            out / "run.json",
            {
                "run_id": run.info.run_id,
                "experiment_id": run.info.experiment_id,
                "experiment_name": experiment,
            },
        )
        mlflow.log_artifact(str(out / "model.pt"), artifact_path="model")
    io.write_json(metrics_path, {k: round(v, 6) for k, v in scores.items()})
    return result
