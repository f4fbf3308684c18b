"""A sweep's table: one row per member with its overrides, outcome and headline metrics."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from genpipe.sweeps.plan import Member

# the columns worth reading in a terminal, when the members' metric files have them
HEADLINE = (
    "generation.winner",
    "generation.fd.vae",
    "generation.fd.gan",
    "generation.fd.real",
    "restoration.winner",
    "restoration.psnr.vae",
    "restoration.psnr.gan",
    *(f"val.{f}.{m}" for f in ("vae", "gan") for m in ("fd", "recognised", "precision", "recall")),
)


@dataclass(frozen=True)
class MemberResult:
    """What one member came to: `ran` now, `held` by `dvc exp show` already, or `failed`."""

    member: Member
    outcome: str
    seconds: float | None = None
    metrics: Mapping[str, Any] = field(default_factory=dict)  # every metric file merged
    rev: str | None = None
    log: str | None = None
    run_id: str | None = None


def flat(node: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{'a': {'b': 1}} -> {'a.b': 1}."""
    out: dict[str, Any] = {}
    for key, value in node.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        out |= flat(value, name) if isinstance(value, Mapping) else {name: value}
    return out


def merged_metrics(files: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The member's metric files as one mapping (their top-level keys do not overlap)."""
    out: dict[str, Any] = {}
    for data in files.values():
        out |= dict(data)
    return out


def rows(results: Sequence[MemberResult]) -> list[dict[str, Any]]:
    """The table's rows: member, outcome, seconds, overrides, then the headline columns present."""
    columns = [c for c in HEADLINE if any(c in flat(r.metrics) for r in results)]
    table = []
    for r in results:
        values = flat(r.metrics)
        row: dict[str, Any] = {
            "member": r.member.name,
            "outcome": r.outcome,
            "seconds": None if r.seconds is None else round(r.seconds, 1),
            "overrides": " ".join(r.member.overrides),
        }
        row |= {c: values.get(c) for c in columns}
        table.append(row)
    return table


def markdown(table: Sequence[Mapping[str, Any]]) -> str:
    if not table:
        return "(no members)"
    header = list(table[0])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in table:
        lines.append("| " + " | ".join(_cell(row[c]) for c in header) + " |")
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value).replace("|", "\\|")
