"""Servable MLflow pyfunc models wrapping genpipe's own checkpoints (not mlflow.pytorch's pt2).

Both models carry the genpipe model file as an artifact and the genpipe package as bundled code,
so `mlflow.pyfunc.load_model` and `mlflow models serve --env-manager local` need no repository.

JSON contract (images are flattened C*H*W lists of floats in [0, 1], row-major; the shape is in
the model's metadata as `image_shape`):
- generation:  input rows {"n": int in 1..4096, "seed": int >= 0}
               -> output rows {"request": row, "index": i, "image": [C*H*W floats]}, n per request.
- restoration: input rows {"image": [C*H*W floats], "mask": [C*H*W 0/1] (optional, 1 = observed)}
               -> output rows {"restored": [C*H*W floats]}. In a request where some rows carry a
               mask, send `"mask": null` on the others (a missing key becomes NaN, which the
               signature's array type rejects).

A request that breaks the contract raises InvalidRequest (an MlflowException with
INVALID_PARAMETER_VALUE) whose message names the row, the column and the rule, so `mlflow models
serve` answers HTTP 400 with the reason as the top-level `message` (any other exception there
becomes "unexpected error", with the reason buried in the stack trace). `n` and `seed` are typed
Any in the signature: with `long`, MLflow casts the JSON before predict runs and `n: 2.5` would
silently become 2. No column is required by the signature: MLflow's schema check would answer a
missing one before predict runs, with its own wording instead of the contract's.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import numpy as np
import pandas as pd
import torch
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

log = logging.getLogger(__name__)

MAX_SAMPLES_PER_REQUEST = 4096
MAX_SEED = 2**63 - 1


def _pixels(model: Any) -> int:
    c, h, w = model.image_shape
    return c * h * w


class InvalidRequest(MlflowException):
    """The error a client should read: serving turns it into HTTP 400 with the reason as message.

    MLflow's scoring server rewrites a predict error's message into "Failed to predict data
    '<the request printed as a pandas table>'. Error: <reason>", which puts the whole request (up
    to thousands of pixel values) before the reason; this exception keeps the reason alone.
    """

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason, error_code=INVALID_PARAMETER_VALUE)

    @property
    def message(self) -> str:
        return self.reason

    @message.setter
    def message(self, _rewritten: str) -> None:
        pass  # the reason stays the message (see the class docstring)


def invalid_request(message: str) -> InvalidRequest:
    return InvalidRequest(message)


def whole_number(value: Any, name: str, row: int, low: int, high: int) -> int:
    """`value` as an int in [low, high]; fractions, bools, text and NaN are refused."""
    ok = isinstance(value, int | float | np.integer | np.floating) and not isinstance(
        value, bool | np.bool_
    )
    if not ok or not np.isfinite(value) or value != int(value) or not low <= value <= high:
        raise invalid_request(
            f"row {row}: {name} must be a whole number in {low}..{high}, got {_show(value)}"
        )
    return int(value)


def _show(value: Any) -> str:
    """A value as the client wrote it in JSON (2.5, not np.float64(2.5))."""
    return repr(value.item() if isinstance(value, np.generic) else value)


def pixel_rows(rows: Sequence[Any], pixels: int, shape: Sequence[int]) -> np.ndarray:
    """Images as [N, C*H*W] float32, each row exactly C*H*W finite values in [0, 1]."""
    out = np.zeros((len(rows), pixels), np.float32)
    for i, row in enumerate(rows):
        values = _flat(row, "image", i, pixels, shape)
        bad = np.flatnonzero(~((values >= 0) & (values <= 1)))  # NaN fails both
        if bad.size:
            raise invalid_request(
                f"row {i}: image values must lie in [0, 1] (scale 0-255 pixels by 1/255); "
                f"got {_show(values[bad[0]])} at index {bad[0]} ({bad.size} values out of range)"
            )
        out[i] = values
    return out


def mask_rows(
    rows: Sequence[Any], pixels: int, shape: Sequence[int], row_ids: Sequence[int]
) -> np.ndarray:
    """Masks as [N, C*H*W] float32 of exact 0/1 values (1 = observed pixel, kept as sent).

    `row_ids` are the request rows the masks came from, for the error message.
    """
    out = np.zeros((len(rows), pixels), np.float32)
    for k, (i, row) in enumerate(zip(row_ids, rows, strict=True)):
        values = _flat(row, "mask", i, pixels, shape)
        bad = np.flatnonzero((values != 0) & (values != 1))
        if bad.size:
            raise invalid_request(
                f"row {i}: mask values must be 0 or 1 (1 = observed pixel), or send "
                f'"mask": null; got {_show(values[bad[0]])} at index {bad[0]}'
            )
        out[k] = values
    return out


def _flat(row: Any, column: str, i: int, pixels: int, shape: Sequence[int]) -> np.ndarray:
    try:
        values = np.asarray(row, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise invalid_request(f"row {i}: {column} must be a flat list of numbers") from None
    if values.size != pixels:
        raise invalid_request(
            f"row {i}: {column} has {values.size} values; this model expects {pixels} "
            f"(C*H*W = {'*'.join(map(str, shape))}, flattened row-major)"
        )
    return values


GENERATION_EXAMPLE = '{"dataframe_records": [{"n": 4, "seed": 0}]}'
RESTORATION_EXAMPLE = (
    '{"dataframe_records": [{"image": [C*H*W floats in [0, 1]], "mask": null}]} '
    "(mask: 1 = observed pixel, for inpainting)"
)


def _require_rows(model_input: pd.DataFrame, columns: Sequence[str], example: str) -> None:
    """Every row has every column: a missing column or value is named, with a request to copy."""
    if len(model_input) == 0:
        raise invalid_request(f"the request has no rows; send e.g. {example}")
    for column in columns:
        absent = (
            list(range(len(model_input)))
            if column not in model_input
            else [i for i, v in enumerate(model_input[column]) if not _present(v)]
        )
        if absent:
            rows = "the request" if len(absent) == len(model_input) else f"row {absent[0]}"
            raise invalid_request(f'{rows} has no "{column}"; send e.g. {example}')


class GenerationModel(mlflow.pyfunc.PythonModel):
    """(n, seed) -> n images drawn from the generator (VAE decoder or EMA GAN generator)."""

    def load_context(self, context: Any) -> None:
        from genpipe.models import load_model

        self.model = load_model(context.artifacts["model"])

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict | None = None
    ) -> pd.DataFrame:
        _require_rows(model_input, ("n", "seed"), GENERATION_EXAMPLE)
        requests = [
            (
                whole_number(n, "n", row, 1, MAX_SAMPLES_PER_REQUEST),
                whole_number(seed, "seed", row, 0, MAX_SEED),
            )
            for row, (n, seed) in enumerate(zip(model_input["n"], model_input["seed"], strict=True))
        ]  # every row is checked before any sampling starts
        frames = []
        for row, (n, seed) in enumerate(requests):
            gen = torch.Generator().manual_seed(seed)
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

        _require_rows(model_input, ("image",), RESTORATION_EXAMPLE)
        pixels, shape = _pixels(self.model), self.model.image_shape
        images = torch.from_numpy(pixel_rows(list(model_input["image"]), pixels, shape))
        masks = list(model_input["mask"]) if "mask" in model_input else [None] * len(model_input)
        has_mask = np.array([_present(m) for m in masks], dtype=bool)
        masked = np.flatnonzero(has_mask).tolist()
        mask_values = mask_rows([masks[i] for i in masked], pixels, shape, masked)
        restored = torch.empty_like(images)  # [N, C*H*W]
        for group in (has_mask, ~has_mask):  # masked rows inpaint; rows without one are denoised
            if not group.any():
                continue
            rows = torch.from_numpy(np.flatnonzero(group))
            batch = images[rows].view(len(rows), *self.model.image_shape)
            mask = None
            if group is has_mask:
                mask = torch.from_numpy(mask_values).view(batch.shape)
            out = restore(self.model, batch, mask, self.method, self.search, self.seed)
            restored[rows] = out.detach().clamp(0, 1).reshape(len(rows), -1)
        return pd.DataFrame({"restored": list(restored.numpy().astype(np.float64))})


def _present(value: Any) -> bool:
    """A JSON value was sent (pandas turns a key some rows lack into None or NaN)."""
    return value is not None and not (isinstance(value, float | np.floating) and np.isnan(value))


def signature_and_example(task: str, image_shape: tuple[int, ...]) -> tuple[Any, pd.DataFrame]:
    """Column signature and a small input example for each task (JSON-friendly arrays)."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, DataType, Schema
    from mlflow.types.schema import AnyType, Array

    pixels = int(np.prod(image_shape))
    image = Array(DataType.double)
    if task == "generation":
        # Any, not long: MLflow would cast n=2.5 to 2 before predict could refuse it
        inputs = Schema(
            [ColSpec(AnyType(), "n", required=False), ColSpec(AnyType(), "seed", required=False)]
        )
        outputs = Schema(
            [
                ColSpec(DataType.long, "request"),
                ColSpec(DataType.long, "index"),
                ColSpec(image, "image"),
            ]
        )
        example = pd.DataFrame({"n": [2], "seed": [0]})
    else:
        inputs = Schema(
            [ColSpec(image, "image", required=False), ColSpec(image, "mask", required=False)]
        )
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
