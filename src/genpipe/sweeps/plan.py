"""What a sweep runs: its members, each one DVC experiment with its own `-S` overrides.

A sweep is written in DVC's own sweep syntax, as `dvc exp run --queue -S` takes it
(`train.seed=range(0,3) vae.prior_components=16,32`: the grid of every combination), and
expanded by DVC's parser; `;` separates grids whose members are listed one after another. A
member's experiment name is derived from what it computes (its target stage and its params), so
a rerun of the sweep finds the members `dvc exp show` already holds.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from genpipe.errors import GenpipeError

SEED_KEY = "train.seed"


class SweepError(GenpipeError, ValueError):
    """A sweep spec DVC cannot expand; the message names the override."""


@dataclass(frozen=True)
class Member:
    """One DVC experiment of a sweep: `dvc exp run --temp -n <name> <target> -S ...`."""

    name: str
    overrides: tuple[str, ...]
    target: str

    def params(self) -> dict[str, str]:
        """The overrides as key -> value (what the member's MLflow run logs as params)."""
        return dict(o.split("=", 1) for o in self.overrides if "=" in o)


def split_grids(spec: str | Sequence[str]) -> list[list[str]]:
    """`a=1,2 b=3; c=4` -> [["a=1,2", "b=3"], ["c=4"]]; a sequence is already one grid."""
    if not isinstance(spec, str):
        return [list(spec)]
    grids = [shlex.split(part) for part in spec.split(";")]
    return [grid for grid in grids if grid]


def expand(spec: str | Sequence[str]) -> list[tuple[str, ...]]:
    """Every override set of the sweep, in DVC's order, each once."""
    from dvc.utils.cli_parse import to_path_overrides
    from dvc.utils.hydra import get_hydra_sweeps

    sets: list[tuple[str, ...]] = []
    for grid in split_grids(spec):
        bad = [o for o in grid if "=" not in o and not o.startswith("~")]
        if bad:
            raise SweepError(f"sweep overrides must look like key=value (as -S takes), got {bad}")
        try:
            sweeps = get_hydra_sweeps(to_path_overrides(grid))
        except Exception as exc:  # Hydra's parser raises several types; all mean a bad spec
            raise SweepError(
                f"DVC cannot expand the sweep {' '.join(grid)!r}: {exc}. Use DVC's sweep syntax: "
                "key=1,2,3 or key=range(0,3) or key=choice(a,b)"
            ) from None
        for sweep in sweeps:
            overrides = tuple(o for path_overrides in sweep.values() for o in path_overrides)
            if overrides not in sets:
                sets.append(overrides)
    if not sets:
        raise SweepError("the sweep is empty: give overrides such as train.seed=range(0,3)")
    return sets


def sample(sets: Sequence[tuple[str, ...]], budget: int, seed: int) -> list[tuple[str, ...]]:
    """`budget` distinct members of a grid, drawn at random (all of it when it is smaller)."""
    if len(sets) <= budget:
        return list(sets)
    chosen = sorted(random.Random(seed).sample(range(len(sets)), budget))
    return [sets[i] for i in chosen]


def member_name(overrides: Sequence[str], target: str, params: dict[str, Any]) -> str:
    """A git-ref-safe name that reads like the overrides, plus a hash of everything the member
    computes: the target stage and the full params after the overrides."""
    words = []
    for override in overrides:
        key, _, value = override.partition("=")
        words.append(f"{key.rsplit('.', 1)[-1]}-{value}")
    readable = re.sub(r"[^A-Za-z0-9._-]+", "-", "_".join(words) or "baseline")
    readable = re.sub(r"([.-])[.-]+", r"\1", readable).strip(".-")[:48].rstrip(".-")
    digest = hashlib.sha256(
        json.dumps({"target": target, "params": params}, sort_keys=True).encode()
    ).hexdigest()
    return f"{readable}-{digest[:7]}"


def seed_of(member: Member) -> int | None:
    value = member.params().get(SEED_KEY)
    return int(value) if value is not None else None


def without_seed(member: Member) -> tuple[str, ...]:
    """The member's overrides other than train.seed: the group its seeds are pooled in."""
    return tuple(o for o in member.overrides if not o.startswith(f"{SEED_KEY}="))
