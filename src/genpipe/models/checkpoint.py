"""Self-describing model files: weights + config + image shape, loadable with weights_only=True.

A model file is a dict:
    format       "genpipe/1"
    kind         "vae" | "generator" | "classifier"
    config       the model's config section as plain data (VAEConfig / GANConfig / EvaluatorConfig)
    image_shape  [C, H, W]
    model_args   extra constructor arguments (e.g. {"n_classes": 10})
    state_dict   the weights
    meta         anything else worth keeping (epoch, metrics, data hash, ...)
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from genpipe import io
from genpipe.config import EvaluatorConfig, GANConfig, VAEConfig
from genpipe.errors import GenpipeError

FORMAT = "genpipe/1"


class CheckpointError(GenpipeError):
    """A model file is missing, truncated or not a genpipe model; the message names the file."""


def _builders() -> dict[str, tuple[type, type]]:
    from genpipe.models.classifier import Classifier
    from genpipe.models.gan import Generator
    from genpipe.models.vae import VAE

    return {
        "vae": (VAE, VAEConfig),
        "generator": (Generator, GANConfig),
        "classifier": (Classifier, EvaluatorConfig),
    }


def build_model(
    kind: str, config: dict, image_shape: list[int] | tuple[int, ...], **model_args: Any
) -> nn.Module:
    try:
        module_cls, config_cls = _builders()[kind]
    except KeyError:
        raise CheckpointError(f"unknown model kind {kind!r}") from None
    return module_cls(config_cls.model_validate(config), tuple(image_shape), **model_args)


def model_record(model: nn.Module, kind: str, meta: dict | None = None, **model_args: Any) -> dict:
    """The dict saved for `model` (weights on CPU, so the file loads on any device)."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    return {
        "format": FORMAT,
        "kind": kind,
        "config": model.config.model_dump(mode="json"),
        "image_shape": list(model.image_shape),
        "model_args": model_args,
        "state_dict": state,
        "meta": meta or {},
    }


def save_model(
    path: str | Path, model: nn.Module, kind: str, meta: dict | None = None, **model_args: Any
) -> None:
    io.save_torch(path, model_record(model, kind, meta, **model_args))


def read_record(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    path = Path(path)
    try:
        record = torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(
            f"{path}: model file not found; run the training stage first"
        ) from None
    except Exception as exc:  # truncated zip, pickle error, foreign object
        raise CheckpointError(
            f"{path}: not a readable genpipe model ({exc}); retrain or restore it"
        ) from None
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a genpipe model file (format {FORMAT!r} expected)")
    return record


def model_from_record(record: dict) -> nn.Module:
    model = build_model(
        record["kind"], record["config"], record["image_shape"], **record.get("model_args", {})
    )
    model.load_state_dict(record["state_dict"])
    return model.eval()


def load_model(path: str | Path, map_location: str | torch.device = "cpu") -> nn.Module:
    """Rebuild a model from its file, in eval mode, on `map_location`."""
    return model_from_record(read_record(path, map_location)).to(map_location)


def weights_hash(record: dict) -> str:
    """sha256 of a model record's kind, config, args and tensors (not the file's zip bytes)."""
    h = hashlib.sha256()
    head = {k: record.get(k) for k in ("kind", "config", "image_shape", "model_args")}
    h.update(json.dumps(head, sort_keys=True).encode())
    for name, tensor in sorted(record["state_dict"].items()):
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()
