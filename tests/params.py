"""The real params.yaml, shrunk for tests (as lightning-hydra-template composes and shrinks its
config): tests never restate a value that params.yaml already holds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from genpipe.config import Params

REPO = Path(__file__).resolve().parents[1]

# Small models and few epochs: the real stages and loops, in seconds on a busy CPU.
TINY: dict[str, Any] = {
    "runtime": {"device": "cpu", "checkpoint_every": 1, "log_images_every": 2, "num_workers": 0},
    "vae": {"epochs": 3, "base_channels": 8, "latent_dim": 4, "kl_warmup_epochs": 2},
    "gan": {"epochs": 4, "base_channels": 8, "latent_dim": 8, "snapshots": 2},
    "evaluator": {"epochs": 2, "min_test_accuracy": 0.0},
    "evaluate": {
        "bootstrap": 20,
        "kid_subsets": 5,
        "n_restore": 16,
        "snapshot_selection_samples": 100,
        "latent_search": {"steps": 5, "restarts": 2},
    },
}


def merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """Deep merge: nested mappings merge key by key, anything else replaces."""
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            out[key] = merge(base[key], value)
        else:
            out[key] = value
    return out


def raw_params() -> dict[str, Any]:
    return yaml.safe_load((REPO / "params.yaml").read_text())


def params_with(update: dict[str, Any] | None = None) -> Params:
    """The shipped params.yaml with `update` merged in, validated."""
    return Params.from_dict(merge(raw_params(), update or {}), source="params.yaml (test)")


def tiny_params(update: dict[str, Any] | None = None) -> Params:
    """params.yaml shrunk to TINY, then `update`."""
    return params_with(merge(TINY, update or {}))


def section(name: str, **values: Any) -> Any:
    """One params.yaml section with `values` merged in, e.g. section("vae", latent_dim=4)."""
    return getattr(params_with({name: values}), name)
