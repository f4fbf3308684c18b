"""Servable MLflow pyfunc models wrapping genpipe's own checkpoints (not mlflow.pytorch's pt2).

Both models carry the genpipe model file as an artifact and the genpipe package as bundled code,
so `mlflow.pyfunc.load_model` and `mlflow models serve --env-manager local` need no repository.

JSON contract (images are flattened C*H*W lists of floats in [0, 1], row-major; the shape is in
the model's metadata as `image_shape`):
- generation:  input rows {"n": int, "seed": int}
               -> output rows {"request": row, "index": i, "image": [C*H*W floats]}, n per request.
- restoration: input rows {"image": [C*H*W floats], "mask": [C*H*W 0/1] (optional, 1 = observed)}
               -> output rows {"restored": [C*H*W floats]}. In a request where some rows carry a
               mask, send `"mask": null` on the others (a missing key becomes NaN, which the
               signature's array type rejects).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import numpy as np
import pandas as pd
import torch

log = logging.getLogger(__name__)

MAX_SAMPLES_PER_REQUEST = 4096


def _pixels(model: Any) -> int:
    c, h, w = model.image_shape
    return c * h * w


class GenerationModel(mlflow.pyfunc.PythonModel):
    """(n, seed) -> n images drawn from the generator (VAE decoder or EMA GAN generator)."""

    def load_context(self, context: Any) -> None:
        from genpipe.models import load_model

        self.model = load_model(context.artifacts["model"])

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict | None = None
    ) -> pd.DataFrame:
        frames = []
        for row, (n, seed) in enumerate(zip(model_input["n"], model_input["seed"], strict=True)):
            n = int(n)
            if not 0 < n <= MAX_SAMPLES_PER_REQUEST:
                raise ValueError(f"n must be in 1..{MAX_SAMPLES_PER_REQUEST}, got {n} (row {row})")
            gen = torch.Generator().manual_seed(int(seed))
            images = self.model.sample(n, generator=gen).clamp(0, 1)  # [n, C, H, W]
            flat = images.reshape(n, -1).numpy().astype(np.float64)
            frames.append(
                pd.DataFrame({"request": row, "index": np.arange(n), "image": list(flat)})
            )
        return pd.concat(frames, ignore_index=True)


class RestorationModel(mlflow.pyfunc.PythonModel):
    """Corrupted images (+ optional mask) -> restored images, by the family's best method."""

    def __init__(self, method: str, seed: int = 0, latent_search: dict | None = None) -> None:
        self.method, self.seed, self.latent_search = method, seed, latent_search or {}

    def load_context(self, context: Any) -> None:
        from genpipe.config import LatentSearchConfig
        from genpipe.models import load_model

        self.model = load_model(context.artifacts["model"])
        self.search = LatentSearchConfig.model_validate(self.latent_search)

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict | None = None
    ) -> pd.DataFrame:
        from genpipe.models.restoration import restore

        pixels = _pixels(self.model)
        images = torch.from_numpy(_stack(model_input["image"], pixels, "image"))  # [N, C*H*W]
        masks = list(model_input["mask"]) if "mask" in model_input else [None] * len(model_input)
        has_mask = np.array([_present(m) for m in masks], dtype=bool)
        restored = torch.empty_like(images)
        for group in (has_mask, ~has_mask):  # masked rows inpaint; rows without one are denoised
            if not group.any():
                continue
            rows = torch.from_numpy(np.flatnonzero(group))
            batch = images[rows].view(len(rows), *self.model.image_shape)
            mask = None
            if group is has_mask:
                chosen = [masks[i] for i in rows.tolist()]
                mask = torch.from_numpy(_stack(chosen, pixels, "mask")).view(batch.shape).round()
            out = restore(self.model, batch, mask, self.method, self.search, self.seed)
            restored[rows] = out.detach().clamp(0, 1).reshape(len(rows), -1)
        return pd.DataFrame({"restored": list(restored.numpy().astype(np.float64))})


def _present(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and np.isnan(value))


def _stack(rows: Any, pixels: int, column: str) -> np.ndarray:
    arrays = [np.asarray(r, dtype=np.float32).reshape(-1) for r in rows]
    for i, a in enumerate(arrays):
        if a.size != pixels:
            raise ValueError(
                f"{column} row {i} has {a.size} values; this model expects {pixels} (C*H*W)"
            )
    return np.stack(arrays) if arrays else np.zeros((0, pixels), np.float32)


def signature_and_example(task: str, image_shape: tuple[int, ...]) -> tuple[Any, pd.DataFrame]:
    """Column signature and a small input example for each task (JSON-friendly arrays)."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, DataType, Schema
    from mlflow.types.schema import Array

    pixels = int(np.prod(image_shape))
    image = Array(DataType.double)
    if task == "generation":
        inputs = Schema([ColSpec(DataType.long, "n"), ColSpec(DataType.long, "seed")])
        outputs = Schema(
            [
                ColSpec(DataType.long, "request"),
                ColSpec(DataType.long, "index"),
                ColSpec(image, "image"),
            ]
        )
        example = pd.DataFrame({"n": [2], "seed": [0]})
    else:
        inputs = Schema([ColSpec(image, "image"), ColSpec(image, "mask", required=False)])
        outputs = Schema([ColSpec(image, "restored")])
        example = pd.DataFrame({"image": [np.full(pixels, 0.5).tolist()]})
    return ModelSignature(inputs=inputs, outputs=outputs), example


def pip_requirements() -> list[str]:
    """Pinned to what is on disk here: serving is offline with --env-manager local."""
    import importlib.metadata as md

    pins = ["mlflow", "torch", "numpy", "pandas", "pydantic", "pyyaml"]
    return [f"{name}=={md.version(name)}" for name in pins]


def log_pyfunc(
    task: str, checkpoint: Path, settings: dict[str, Any], image_shape: tuple[int, ...]
) -> Any:
    """Log the task's pyfunc model into the active run; returns MLflow's ModelInfo.

    `settings` (restoration: method, seed, latent_search) travel inside the pickled model and in
    its metadata; model_config is avoided because MLflow also logs it as run params, which clash
    when both tasks are logged from one run.
    """
    import genpipe

    if task == "generation":
        python_model: mlflow.pyfunc.PythonModel = GenerationModel()
    else:
        python_model = RestorationModel(
            settings["method"], settings.get("seed", 0), settings.get("latent_search")
        )
    signature, example = signature_and_example(task, image_shape)
    return mlflow.pyfunc.log_model(
        name=f"{task}_model",
        python_model=python_model,
        artifacts={"model": str(checkpoint)},
        code_paths=[str(Path(genpipe.__file__).parent)],
        signature=signature,
        input_example=example,
        pip_requirements=pip_requirements(),
        metadata={"image_shape": list(image_shape), "task": task, **settings},
    )
