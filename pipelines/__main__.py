"""`python -m pipelines [-S key=value ...] [--preset FILE]`: one run of the genpipe flow.

The same as `python -m pipelines.genpipe_flow`, but it starts DVC's side of the plan
(pipelines.dvc_plan: DVC's imports and the stage graph, about a second) before this process
imports Prefect (about two seconds), so the two load on separate cores.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from genpipe.settings import project_root
from pipelines.dvc_plan import DvcSide


def unreachable_api(environ: dict[str, str] | os._Environ[str] = os.environ) -> str | None:
    """Why the Prefect API in PREFECT_API_URL cannot be used, or None (unset: Prefect starts a
    temporary local one). Asked before Prefect is imported, so the answer is one line, not
    Prefect's traceback."""
    from genpipe.services.servers import http_probe

    url = environ.get("PREFECT_API_URL")
    if not url:
        return None
    auth = environ.get("PREFECT_API_AUTH_STRING")
    header = None
    if auth:
        import base64

        header = "Basic " + base64.b64encode(auth.encode()).decode()
    problem = http_probe(f"{url.rstrip('/')}/admin/version", 10, header)
    if problem is None:
        return None
    return (
        f"the Prefect API at PREFECT_API_URL={url} cannot be used ({problem}). Start it "
        "(`make services-up`, or `make prefect-server`), set PREFECT_API_URL and "
        'PREFECT_API_AUTH_STRING with eval "$(make -s services-env)", or unset PREFECT_API_URL '
        "to run with a temporary local API"
    )


def run(argv: list[str] | None = None) -> int:
    if problem := unreachable_api():
        print(f"genpipe flow: error: {problem}", file=sys.stderr)
        return 2
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--project", default=None)
    known, _ = p.parse_known_args(argv)
    if not {"-h", "--help"} & set(argv if argv is not None else sys.argv[1:]):
        DvcSide.prestart(Path(known.project) if known.project else project_root())

    from pipelines.genpipe_flow import main  # imports Prefect

    return main(argv)


if __name__ == "__main__":
    raise SystemExit(run())
