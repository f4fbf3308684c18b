"""Config of equal-budget tuning (`tune:` in params.yaml, read by `make tune`; no stage reads it).

Each family gets the same number of sweep members (`budget`) drawn from its own search space,
written as `dvc exp run -S` sweep overrides, and is scored on the validation split only; the
best member per family is then retrained over `seeds` training seeds and judged on test.
"""

from __future__ import annotations

from pydantic import Field, PositiveInt, field_validator

from genpipe.config.base import Section
from genpipe.config.evaluate import GenerationMetric

FAMILIES = ("vae", "gan")


class TuneConfig(Section):
    """`tune:` the budget, the search spaces and how the best member is chosen."""

    budget: PositiveInt  # sweep members per family, the same for every family
    seed: int  # which members a search space larger than the budget gives (random search)
    metric: GenerationMetric  # compared on val: score_val@<family> writes it
    seeds: int = Field(ge=1)  # the best configurations are retrained for train.seed 0..seeds-1
    space: dict[str, list[str]]  # family -> `-S` overrides in DVC's sweep syntax (a grid)

    @field_validator("space")
    @classmethod
    def _one_space_per_family(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        if sorted(value) != sorted(FAMILIES):
            raise ValueError(
                f"needs exactly one search space per family {FAMILIES}, got {sorted(value)}"
            )
        for family, overrides in value.items():
            for override in overrides:
                key = override.split("=", 1)[0].lstrip("+~")
                if "=" not in override or not key.startswith(f"{family}."):
                    raise ValueError(
                        f"{family}: {override!r} must set a key of the {family} section "
                        f"(like {family}.lr=0.001,0.002), so each family is tuned on its own"
                    )
        return value
