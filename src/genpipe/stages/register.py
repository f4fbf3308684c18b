"""DVC stage `register`: apply data/register/decision.json to the MLflow registry, compare-and-set.

An ordinary stage: it runs when the decision or the champions snapshot changed, never from the
run-cache (its record, data/register/applied.json, is a persisted output). It stops with an error
naming the new champion when someone moved `champion` since the snapshot the decision was made
against; `dvc repro` then scores that champion and decides again. See genpipe.registry.apply.
"""

from __future__ import annotations

import logging
from pathlib import Path

from genpipe import io
from genpipe.evaluation.schema import read
from genpipe.registry.apply import apply_decision
from genpipe.registry.schema import Decision
from genpipe.stages import _cli

log = logging.getLogger(__name__)


def register(decision_path: Path, root: Path, out: Path) -> None:
    decision = read(Decision, decision_path, "decide")
    applied = apply_decision(decision, root)
    io.write_json(
        out,
        {
            "decision_id": decision.decision_id,
            "tasks": {t: a.to_dict() for t, a in applied.items()},
        },
    )
    for task, a in applied.items():
        new = " (newly registered)" if a.registered else ""
        log.info(
            "%s: %s champion v%s, challenger v%s%s", task, a.name, a.champion, a.challenger, new
        )


def main(argv: list[str] | None = None) -> int:
    p = _cli.parser(__doc__ or "register", params=False)  # the decision names everything
    p.add_argument("--decision", type=Path, required=True, help="data/register/decision.json")
    p.add_argument("--out", type=Path, required=True, help="what was applied (persisted record)")
    p.add_argument(
        "--root", type=Path, default=Path("."), help="folder the decision's paths are under"
    )
    args = p.parse_args(argv)
    return _cli.run("register", lambda: register(args.decision, args.root, args.out))


if __name__ == "__main__":
    raise SystemExit(main())
