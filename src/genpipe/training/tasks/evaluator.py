"""Evaluator training task: the classifier whose penultimate features define the generation
metrics' space.

Deterministic by construction: one seed drives initialisation, dropout, shuffling and the
augmentation shifts, and the weights kept are those of the best validation epoch, so the same
data and params give the same weights (and so the same protocol hash) on the same machine. The
export refuses a classifier below `evaluator.min_test_accuracy`: metrics in a feature space that
cannot tell the classes apart would mislead.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F

from genpipe.config import EvaluatorConfig, Params
from genpipe.data.dataset import PreparedData
from genpipe.errors import GenpipeError
from genpipe.models.checkpoint import save_model
from genpipe.models.classifier import Classifier, accuracy
from genpipe.training import distributed
from genpipe.training.data import Batch
from genpipe.training.task import Exported, TaskContext


class EvaluatorAccuracyError(GenpipeError):
    """The evaluator classifier is not accurate enough for its features to be trusted."""


def random_shift(
    x: torch.Tensor,
    generator: torch.Generator,
    max_shift: int = 1,
    size: int | None = None,
    rows: slice = slice(None),
) -> torch.Tensor:
    """Translate each image by up to `max_shift` pixels (zero fill): cheap, label-preserving.

    The shifts are drawn for a global batch of `size` images and `rows` of them applied to `x`.
    """
    n, c, h, w = x.shape
    pad = F.pad(x, (max_shift,) * 4)  # [N, C, H+2s, W+2s]
    shifts = torch.randint(0, 2 * max_shift + 1, (2, size or n), generator=generator)
    dy, dx = shifts[:, rows].to(x.device)
    rows = (dy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]  # [N, 1, H, 1]
    cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, None, :]  # [N, 1, 1, W]
    batch = torch.arange(n, device=x.device)[:, None, None, None]
    chan = torch.arange(c, device=x.device)[None, :, None, None]
    return pad[batch, chan, rows, cols]  # [N, C, H, W]


class EvaluatorTask:
    name: ClassVar[str] = "evaluator"
    val_metric: ClassVar[str | None] = "val_accuracy"
    val_mode: ClassVar[Literal["min", "max"]] = "max"
    drop_last = False  # every image counts on small splits
    channels_last = False

    def __init__(self, config: EvaluatorConfig, data: PreparedData, context: TaskContext) -> None:
        runtime = context.runtime
        torch.manual_seed(config.seed)  # weight init and dropout
        self.config, self.runtime = config, runtime
        self.epochs, self.batch_size = config.epochs, config.batch_size
        # one generator draws the epoch order and the shifts, in that order each epoch
        self.data_order = torch.Generator().manual_seed(config.seed)
        self.n_classes = len(data.classes)
        # The default memory layout, not channels_last: these weights define the metric space,
        # and another layout's rounding would move every generation metric.
        classifier = Classifier(config, data.image_shape, n_classes=self.n_classes)
        if context.ranks.active:  # batch statistics of the global batch
            classifier = distributed.global_batch_norm(classifier)
        self.model = classifier.to(runtime.device)
        self.forward = distributed.wrap(self.model, context.ranks)
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=config.lr, weight_decay=1e-4)
        steps_per_epoch = -(-len(data.train) // config.batch_size)
        self.sched = torch.optim.lr_scheduler.OneCycleLR(
            self.opt, max_lr=config.lr, total_steps=config.epochs * steps_per_epoch
        )
        device = runtime.device
        self.val = (data.val.as_float(device), torch.from_numpy(data.val.labels).to(device))
        self.test = (data.test.as_float(device), torch.from_numpy(data.test.labels).to(device))
        self.meta = {"data_hash": data.data_hash, "dataset": data.meta.get("dataset")}

    @classmethod
    def build(cls, params: Params, data: PreparedData, context: TaskContext) -> EvaluatorTask:
        return cls(params.evaluator, data, context)

    @classmethod
    def run_config(cls, params: Params) -> dict[str, Any]:
        return {"evaluator": params.evaluator.model_dump(mode="json")}

    def generators(self) -> dict[str, torch.Generator]:
        return {}  # data_order (checkpointed by the loop) also draws the shifts

    def state_dict(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "opt": self.opt.state_dict(),
            "sched": self.sched.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["opt"])
        self.sched.load_state_dict(state["sched"])

    def train_step(self, batch: Batch, epoch: int) -> dict[str, torch.Tensor]:
        self.model.train()
        x = batch.x
        if self.config.augment:
            x = random_shift(x, self.data_order, size=batch.size, rows=batch.rows)
        loss = F.cross_entropy(self.forward(x), batch.y, label_smoothing=0.05)
        self.opt.zero_grad(set_to_none=True)
        (loss if batch.weight == 1 else loss * batch.weight).backward()
        self.opt.step()
        self.sched.step()
        return {"train_loss": loss.detach()}

    def validate(self) -> dict[str, float]:
        return {"val_accuracy": accuracy(self.model, *self.val)}

    def end_epoch(self, epoch: int) -> None:
        pass

    def grids(self) -> dict[str, torch.Tensor]:
        return {}

    def exportable(self) -> torch.nn.Module:
        return self.model

    def export(self, out: Path, weights: dict[str, torch.Tensor] | None, epoch: int) -> Exported:
        """Best-val weights, scored once on test; below the accuracy floor nothing is written."""
        if weights is not None:
            self.model.load_state_dict(weights)
        val_accuracy = accuracy(self.model, *self.val)
        test_accuracy = accuracy(self.model, *self.test)
        if test_accuracy < self.config.min_test_accuracy:
            raise EvaluatorAccuracyError(
                f"evaluator test accuracy {test_accuracy:.4f} is below "
                f"evaluator.min_test_accuracy={self.config.min_test_accuracy:g} (params.yaml). "
                "Train longer (evaluator.epochs), adjust evaluator.lr, or check data/prepared "
                "for label noise."
            )
        scores = {"test_accuracy": test_accuracy, "val_accuracy": val_accuracy}
        meta = {**self.meta, **scores, "best_epoch": epoch}
        save_model(out / "model.pt", self.model, "classifier", meta, n_classes=self.n_classes)
        return Exported([out / "model.pt"], scores)


TASK = EvaluatorTask
