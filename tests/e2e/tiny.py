"""Shrink a project copy's params.yaml for end-to-end runs: same stages and code, seconds not
minutes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tests.params import TINY, merge


def shrink_params(project: Path, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Rewrite project/params.yaml with the tiny settings (plus `extra`); returns the params."""
    path = project / "params.yaml"
    tiny = merge(TINY, {"vae": {"epochs": 2}, "gan": {"epochs": 2}})
    params = merge(merge(yaml.safe_load(path.read_text()), tiny), extra or {})
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return params
