"""DVC stage `register` (always run): make the MLflow registry hold data/register/decision.json.

Cheap and idempotent: when the registry already holds the decision it returns after one read
(no MLflow import); after a wiped store, a new tracking server or a reverted experiment it puts
back the champions without duplicate versions. See genpipe.registry.reconcile.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from genpipe.stages import _cli

log = logging.getLogger(__name__)


def register(decision: Path, root: Path, work: Path) -> None:
    from genpipe import tracking
    from genpipe.registry.reconcile import in_sync

    for line in tracking.clean_orphans(work):  # even when the trainings came from the run-cache
        log.info("%s", line)
    record = _cli.read_json(decision, "decision", "decide")
    if in_sync(record):
        print(f"registry holds decision {record['decision_id'][:12]}", file=sys.stderr)
        return
    from genpipe.registry.reconcile import reconcile

    for task, applied in reconcile(record, root).items():
        log.info(
            "%s: %s champion v%s, challenger v%s%s: %s",
            task,
            applied.name,
            applied.champion,
            applied.challenger,
            " (newly registered)" if applied.registered else "",
            applied.note,
        )


def main(argv: list[str] | None = None) -> int:
    p = _cli.parser(__doc__ or "register", params=False)  # the decision names everything
    p.add_argument("--decision", type=Path, required=True, help="data/register/decision.json")
    p.add_argument(
        "--root", type=Path, default=Path("."), help="folder the decision's paths are under"
    )
    p.add_argument(
        "--work", type=Path, required=True, help="resume folders of the trainings (.genpipe/work)"
    )
    args = p.parse_args(argv)
    return _cli.run("register", lambda: register(args.decision, args.root, args.work))


if __name__ == "__main__":
    raise SystemExit(main())
