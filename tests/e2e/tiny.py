"""Shrink the real params.yaml for end-to-end runs: same stages and code, seconds not minutes."""

from __future__ import annotations

from pathlib import Path

import yaml

TINY = {
    "train": {"batch_size": 64, "checkpoint_every": 1, "log_images_every": 1, "num_workers": 0},
    "vae": {"epochs": 2},
    "gan": {"epochs": 2, "snapshots": 2},
    "evaluator": {"epochs": 2, "min_test_accuracy": 0.0},
    "evaluate": {
        "bootstrap": 20,
        "kid_subsets": 5,
        "n_restore": 16,
        "snapshot_selection_samples": 100,
        "latent_search": {"steps": 5, "restarts": 2},
    },
}


def merge(base: dict, update: dict) -> dict:
    out = dict(base)
    for key, value in update.items():
        out[key] = merge(base.get(key, {}), value) if isinstance(value, dict) else value
    return out


def shrink_params(project: Path, extra: dict | None = None) -> dict:
    """Rewrite project/params.yaml with the tiny settings (plus `extra`); returns the params."""
    path = project / "params.yaml"
    params = merge(merge(yaml.safe_load(path.read_text()), TINY), extra or {})
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return params
