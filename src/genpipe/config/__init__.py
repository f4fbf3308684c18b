"""params.yaml, loaded once at the edge into typed, frozen, validated config objects.

Errors name the offending dotted key (for example `data.split`), so a typo in params.yaml is
reported as such instead of surfacing as a KeyError deep inside a stage.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import Field, ValidationError

from genpipe.config.base import Section
from genpipe.config.data import DataConfig, ValidateConfig
from genpipe.config.evaluate import EvaluateConfig, RegisterConfig
from genpipe.config.services import ServicesConfig
from genpipe.config.train import EvaluatorConfig, GANConfig, TrainConfig, VAEConfig
from genpipe.errors import GenpipeError

__all__ = [
    "ConfigError",
    "DataConfig",
    "EvaluateConfig",
    "EvaluatorConfig",
    "GANConfig",
    "Params",
    "RegisterConfig",
    "ServicesConfig",
    "TrainConfig",
    "VAEConfig",
    "ValidateConfig",
    "load_params",
]


class ConfigError(GenpipeError, ValueError):
    """params.yaml is missing, unreadable or invalid; the message names file and key."""


class Params(Section):
    """The whole params.yaml: one top-level section per stage."""

    data: DataConfig = DataConfig()
    validate_: ValidateConfig = Field(default=ValidateConfig(), alias="validate")
    train: TrainConfig = TrainConfig()
    vae: VAEConfig = VAEConfig()
    gan: GANConfig = GANConfig()
    evaluator: EvaluatorConfig = EvaluatorConfig()
    evaluate: EvaluateConfig = EvaluateConfig()
    register_: RegisterConfig = Field(default=RegisterConfig(), alias="register")
    services: ServicesConfig | None = None  # no stage reads it; `make services-up` does

    @classmethod
    def from_dict(cls, raw: dict, source: str = "params") -> Params:
        """Validate a params mapping; raise ConfigError naming each bad dotted key."""
        try:
            return cls.model_validate(raw)
        except ValidationError as exc:
            raise ConfigError(_describe(exc, source)) from None


def _describe(exc: ValidationError, source: str) -> str:
    lines = [f"invalid {source}:"]
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"])
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key (misspelt?); remove it or check the spelling"
        lines.append(f"  - {key or '<root>'}: {msg} (got {err.get('input')!r})")
    lines.append("Fix these keys and run again.")
    return "\n".join(lines)


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read and validate a params file."""
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
    return Params.from_dict(raw, source=str(path))
