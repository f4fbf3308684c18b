"""Load what the evaluate stage judges: prepared data, the evaluator and the trained models.

Every check that can fail on a user's files runs here, before any computation, and names the
file and the stage to rerun.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from genpipe.data.dataset import PreparedData, load_prepared
from genpipe.errors import GenpipeError
from genpipe.models.checkpoint import model_from_record, read_record, weights_hash


class EvaluateInputError(GenpipeError):
    """An input of the evaluate stage is missing or inconsistent; the message names the file."""


@dataclass(frozen=True)
class ModelFile:
    path: Path
    module: nn.Module
    weights_hash: str
    meta: dict  # what its training recorded (epoch, the evaluator's accuracies...)


@dataclass(frozen=True)
class EvaluationInputs:
    data: PreparedData
    evaluator: ModelFile
    vae: ModelFile
    gan_snapshots: dict[str, ModelFile]  # EMA snapshots to choose from on val
    train_runs: dict[str, str | None]  # family -> MLflow run id of its training


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


def load_model_file(path: Path, kind: str, device: torch.device) -> ModelFile:
    record = read_record(path)
    if record["kind"] != kind:
        raise EvaluateInputError(f"{path}: a {record['kind']!r} model, expected {kind!r}")
    module = model_from_record(record).to(device)
    return ModelFile(path, module, weights_hash(record), record.get("meta", {}))


def load_inputs(
    prepared: Path, vae_dir: Path, gan_dir: Path, evaluator_dir: Path, device: torch.device
) -> EvaluationInputs:
    data = load_prepared(prepared)
    runs = {"vae": read_run(vae_dir), "gan": read_run(gan_dir)}  # fail before the work
    evaluator = load_model_file(evaluator_dir / "model.pt", "classifier", device)
    vae = load_model_file(vae_dir / "model.pt", "vae", device)
    snapshots = {
        name: load_model_file(path, "generator", device)
        for name, path in gan_candidates(gan_dir).items()
    }
    checked = [("vae", vae), ("evaluator", evaluator), *(("gan", s) for s in snapshots.values())]
    for name, model in checked:
        if tuple(model.module.image_shape) != data.image_shape:
            raise EvaluateInputError(
                f"{model.path}: the {name} model expects images {model.module.image_shape}, "
                f"{prepared} has {data.image_shape}; retrain it (`dvc repro train_{name}`)"
            )
    return EvaluationInputs(
        data,
        evaluator,
        vae,
        snapshots,
        {family: run.get("run_id") for family, run in runs.items()},
    )
