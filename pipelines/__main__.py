"""`python -m pipelines [-S key=value ...] [--preset FILE]`: one run of the genpipe flow.

The same as `python -m pipelines.genpipe_flow`, but it starts DVC's side of the plan
(pipelines.dvc_plan: DVC's imports and the stage graph, about a second) before this process
imports Prefect (about two seconds), so the two load on separate cores.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from genpipe.settings import project_root
from pipelines.dvc_plan import DvcSide


def run(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--project", default=None)
    known, _ = p.parse_known_args(argv)
    if not {"-h", "--help"} & set(argv if argv is not None else sys.argv[1:]):
        DvcSide.prestart(Path(known.project) if known.project else project_root())

    from pipelines.genpipe_flow import main  # imports Prefect

    return main(argv)


if __name__ == "__main__":
    raise SystemExit(run())
