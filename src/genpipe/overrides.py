"""Apply `key=value` overrides to params.yaml exactly as `dvc exp run -S` does.

Every stage reads params.yaml and dvc.yaml lists the keys each one depends on, so DVC's params
tracking sees an override and reruns exactly the stages that read that key. The edit uses DVC's
own `--set-param` function (`dvc.utils.hydra.apply_overrides`, Hydra's grammar: `vae.epochs=2`,
`data.download.mirrors=[http://host/mnist/]`, `+new.key=1`), is validated by
`genpipe.config.Params` on a temp copy, and only then renamed over params.yaml: a typo never
reaches a stage and a crash never leaves a half-written file. As with `dvc exp run -S` in the
workspace, the override stays in params.yaml afterwards (`git diff params.yaml`).
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from genpipe.config import ConfigError, Params
from genpipe.errors import GenpipeError

log = logging.getLogger(__name__)

Overrides = Sequence[str] | Mapping[str, Any]


class OverrideError(GenpipeError, ValueError):
    """An override is malformed or names a key params.yaml does not have."""


def as_override_strings(overrides: Overrides | None) -> list[str]:
    """Accept `["vae.epochs=2"]` (the DVC CLI form) or `{"vae.epochs": 2}` (handy in the UI)."""
    if not overrides:
        return []
    if isinstance(overrides, Mapping):
        return [f"{key}={_hydra_literal(value)}" for key, value in overrides.items()]
    if isinstance(overrides, str):
        raise OverrideError(
            f"overrides must be a list of key=value strings, got one string {overrides!r}"
        )
    bad = [o for o in overrides if "=" not in o and not o.startswith("~")]
    if bad:
        raise OverrideError(
            f"overrides must look like key=value (as in `dvc exp run -S`), got {bad}"
        )
    return list(overrides)


def apply_overrides(
    params_path: Path, overrides: Overrides | None, check: Callable[[Params], None] | None = None
) -> list[str]:
    """Validate the overridden params (and `check` them), then atomically replace params_path if
    anything changed. Returns the override strings applied (empty: none given, or no change).
    """
    from dvc.exceptions import InvalidArgumentError
    from dvc.utils.hydra import apply_overrides as dvc_apply_overrides

    strings = as_override_strings(overrides)
    if not strings:
        return []
    params_path = Path(params_path)
    original = params_path.read_text()
    fd, tmp = tempfile.mkstemp(prefix=".params-override.", suffix=".yaml", dir=params_path.parent)
    tmp_path = Path(tmp)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(original)
        try:
            dvc_apply_overrides(tmp_path, strings)
        except InvalidArgumentError as exc:
            cause = str(exc.__cause__ or exc).strip()
            raise OverrideError(
                f"cannot apply overrides {strings} to {params_path}: {cause}. Keys are dotted "
                "params.yaml paths such as vae.epochs; check the spelling."
            ) from None
        new = yaml.safe_load(tmp_path.read_text()) or {}
        try:
            params = Params.from_dict(new, source=f"{params_path} with overrides {strings}")
        except ConfigError as exc:
            raise OverrideError(str(exc)) from None
        if check is not None:
            check(params)
        if new == (yaml.safe_load(original) or {}):
            log.info("overrides %s leave %s unchanged", strings, params_path)
            return []
        os.replace(tmp_path, params_path)
        log.info("applied overrides %s to %s", strings, params_path)
        return strings
    finally:
        tmp_path.unlink(missing_ok=True)


def _hydra_literal(value: Any) -> str:
    """Write a Python value in Hydra's override grammar (quoted strings, [lists], {dicts})."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        # Hydra unescapes backslashes only where they precede a quote (or the closing quote).
        escaped = re.sub(r"(\\*)'", lambda m: m.group(1) * 2 + "\\'", value)
        escaped = re.sub(r"(\\+)$", lambda m: m.group(1) * 2, escaped)
        return "'" + escaped + "'"
    if isinstance(value, Mapping):
        return "{" + ",".join(f"{k}:{_hydra_literal(v)}" for k, v in value.items()) + "}"
    if isinstance(value, Sequence):
        return "[" + ",".join(_hydra_literal(v) for v in value) + "]"
    raise OverrideError(f"cannot express override value {value!r} ({type(value).__name__})")


def read_preset(path: Path) -> list[str]:
    """A preset is a YAML list of `key=value` overrides, the same grammar as -S."""
    try:
        items = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise GenpipeError(f"preset {path}: unreadable ({exc})") from None
    if not isinstance(items, list) or not all(isinstance(i, str) and "=" in i for i in items):
        raise GenpipeError(f"preset {path}: expected a YAML list of 'key=value' strings")
    return items
