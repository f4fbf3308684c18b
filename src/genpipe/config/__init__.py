"""params.yaml, loaded once at the edge into typed, frozen, validated config objects.

Errors name the offending dotted key (for example `data.split`), so a typo in params.yaml is
reported as such instead of surfacing as a KeyError deep inside a stage.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from genpipe.config.base import Section
from genpipe.config.data import DataConfig, ValidateConfig
from genpipe.config.evaluate import EvaluateConfig, LatentSearchConfig, RegisterConfig
from genpipe.config.orchestration import OrchestrationConfig
from genpipe.config.services import ServicesConfig
from genpipe.config.train import (
    DistributedConfig,
    EvaluatorConfig,
    GANConfig,
    RuntimeConfig,
    TrainConfig,
    VAEConfig,
)
from genpipe.config.tune import TuneConfig
from genpipe.errors import GenpipeError

__all__ = [
    "ConfigError",
    "DataConfig",
    "DistributedConfig",
    "EvaluateConfig",
    "EvaluatorConfig",
    "GANConfig",
    "LatentSearchConfig",
    "OrchestrationConfig",
    "Params",
    "RegisterConfig",
    "RuntimeConfig",
    "Section",
    "ServicesConfig",
    "TrainConfig",
    "TuneConfig",
    "VAEConfig",
    "ValidateConfig",
    "load_params",
]


class ConfigError(GenpipeError, ValueError):
    """params.yaml is missing, unreadable or invalid; the message names file and key."""


@dataclass(frozen=True)
class Params:
    """The whole params.yaml: one top-level section per stage (plus `runtime`)."""

    data: DataConfig
    validate: ValidateConfig
    train: TrainConfig
    runtime: RuntimeConfig
    vae: VAEConfig
    gan: GANConfig
    evaluator: EvaluatorConfig
    evaluate: EvaluateConfig
    register: RegisterConfig
    tune: TuneConfig  # equal-budget tuning (`make tune`); no stage reads it
    services: ServicesConfig  # the team's shared servers (genpipe.services); no stage reads it
    orchestration: OrchestrationConfig  # stage -> work pool for the Prefect flow; no stage reads it

    @classmethod
    def sections(cls) -> dict[str, type[Section]]:
        """Section name -> its config class, in params.yaml order."""
        hints = typing.get_type_hints(cls)
        return {f.name: hints[f.name] for f in dataclasses.fields(cls)}

    @classmethod
    def from_dict(cls, raw: dict[str, Any], source: str = "params") -> Params:
        """Validate a params mapping; raise ConfigError naming each bad dotted key."""
        problems: list[str] = []
        sections: dict[str, Section] = {}
        for name in sorted(set(raw) - set(cls.sections())):
            problems.append(f"  - {name}: unknown section (misspelt?); remove it")
        for name, section in cls.sections().items():
            if name not in raw:
                problems.append(f"  - {name}: missing section")
                continue
            try:
                sections[name] = section.model_validate(raw[name])
            except ValidationError as exc:
                problems += _describe(exc, name)
        if problems:
            raise ConfigError("\n".join([f"invalid {source}:", *problems, _FIX]))
        return cls(**sections)  # type: ignore[arg-type]


_FIX = "Fix these keys (params.yaml is the reference for every key) and run again."


def _describe(exc: ValidationError, section: str) -> list[str]:
    lines = []
    for err in exc.errors():
        key = ".".join([section, *(str(p) for p in err["loc"])])
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key (misspelt?); remove it or check the spelling"
        elif err["type"] == "missing":
            msg = "missing key"
        lines.append(f"  - {key}: {msg} (got {err.get('input')!r})")
    return lines


def read_params_file(path: str | Path) -> dict[str, Any]:
    """params.yaml as a plain mapping, with errors that name the file."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: not found; run from the project root or pass --params"
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(
            f"{path}: top level must be a mapping of sections, got {type(raw).__name__}"
        )
    return raw


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read and validate a params file."""
    return Params.from_dict(read_params_file(path), source=str(path))
