"""The files evaluation writes, as the pydantic models their writer and every reader share:
data/eval/report.json (`Report`, the evaluate stage) and data/eval/incumbents.json (`Incumbents`,
the score_champions stage). docs/ARCHITECTURE.md shows both."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from genpipe.config.evaluate import EvaluateConfig
from genpipe.errors import GenpipeError

Task = Literal["generation", "restoration"]
Family = Literal["vae", "gan"]


class Record(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Stat(Record):
    value: float
    ci: tuple[float, float] | None = None  # 95% percentile bootstrap; None with one draw


Scores = dict[str, Stat]  # metric -> value and CI


class MethodSummary(Record):
    mean: Scores  # over every corruption: psnr, ssim, ssim_gaussian where it fits
    per_corruption: dict[str, Scores]


class FamilyRestoration(Record):
    best_method: str
    methods: dict[str, MethodSummary]

    @property
    def best(self) -> MethodSummary:
        return self.methods[self.best_method]


class Restoration(Record):
    vae: FamilyRestoration
    gan: FamilyRestoration
    baselines: dict[str, MethodSummary]  # corrupted, classical

    def family(self, family: Family) -> FamilyRestoration:
        return self.vae if family == "vae" else self.gan


class ModelEntry(Record):
    checkpoint: str
    weights_hash: str
    run_id: str | None  # its training run in MLflow
    selected_snapshot: str | None = None  # the GAN's EMA snapshot chosen on val


class Protocol(Record):
    evaluate: EvaluateConfig
    reference_split: str
    real_floor: str
    ci: str
    snapshot_selection: str
    corruptions: list[str]
    panel_rows: list[str]
    n_restore: int
    n_samples: int
    n_reference: int
    ssim: dict[str, str]  # how each SSIM figure was measured, or why it is absent


class Reference(Record):
    split: str
    recognised: float  # the real test images' own recognised share


class Report(Record):
    """data/eval/report.json: the VAE and the GAN under one protocol."""

    protocol_hash: str
    protocol: Protocol
    dataset: str
    data_hash: str
    evaluator_hash: str
    evaluator_accuracy: float | None
    models: dict[Family, ModelEntry]
    generation: dict[str, Scores]  # vae, gan, real
    reference: Reference
    restoration: Restoration


class Incumbent(Record):
    """A task's champion (from data/registry/champions.json), scored under the report's protocol."""

    version: str
    candidate_id: str
    family: str
    method: str | None  # the restoration method it serves; None for generation
    weights_hash: str | None
    registered_by: str | None
    scored: bool
    reason: str | None  # why it could not be scored
    same_as: Family | None  # the new candidate with the same weights: its numbers are reused
    scores: Scores


class TaskIncumbent(Record):
    champion: Incumbent | None  # None: the registry has no champion for this task
    rolled_back: list[str]  # candidate ids moved away from by `genpipe registry rollback`


class Incumbents(Record):
    """data/eval/incumbents.json: each task's champion, scored beside report.json."""

    protocol_hash: str  # the report's: decide refuses numbers from two protocols
    tasks: dict[Task, TaskIncumbent]


M = TypeVar("M", bound=BaseModel)


def read(model: type[M], path: Path, stage: str) -> M:
    """A file an upstream stage wrote; errors name it and the stage that rewrites it."""
    try:
        return model.model_validate_json(path.read_bytes())
    except FileNotFoundError:
        raise GenpipeError(f"{path}: not found; `dvc repro {stage}` writes it") from None
    except ValidationError as exc:
        raise GenpipeError(
            f"{path}: not a valid {model.__name__} ({exc.error_count()} errors, first: "
            f"{exc.errors()[0]['loc']}: {exc.errors()[0]['msg']}); `dvc repro -f {stage}` "
            "rewrites it"
        ) from None
