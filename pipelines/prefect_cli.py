"""`python -m pipelines.prefect_cli ARGS` = `prefect ARGS`, with one client call made compatible.

Why: with the fastapi installed here (0.154), Prefect 3.8's server rejects an explicit JSON
`null` for a paginated body field (`"limit": null` -> HTTP 422), and `prefect deploy` sends one
when it checks for live workers after saving each deployment. The deployment is saved, but the
command then fails and `--all` stops before the next deployment. Sending the server's own
defaults instead of null avoids it. Remove this module once pyproject pins a fastapi that treats
null as "use the default" again; until then `make prefect-deploy` goes through it.
"""

from __future__ import annotations

import sys
from typing import Any

DEFAULT_LIMIT = 200  # PREFECT_SERVER_API_DEFAULT_LIMIT's default


def patch_worker_listing() -> None:
    """Make `read_workers_for_work_pool` send integer offset/limit instead of null."""
    from prefect.client.orchestration import PrefectClient

    original = PrefectClient.read_workers_for_work_pool
    if getattr(original, "_genpipe_patched", False):
        return

    async def read_workers_for_work_pool(
        self: PrefectClient,
        work_pool_name: str,
        worker_filter: Any = None,
        offset: int | None = None,
        limit: int | None = None,
    ) -> Any:
        return await original(
            self,
            work_pool_name,
            worker_filter=worker_filter,
            offset=offset or 0,
            limit=limit or DEFAULT_LIMIT,
        )

    read_workers_for_work_pool._genpipe_patched = True  # type: ignore[attr-defined]
    PrefectClient.read_workers_for_work_pool = read_workers_for_work_pool  # type: ignore[method-assign]


def main(argv: list[str] | None = None) -> int:
    patch_worker_listing()
    from prefect.cli import app

    sys.argv = ["prefect", *(sys.argv[1:] if argv is None else argv)]
    result = app()
    return int(result or 0)


if __name__ == "__main__":
    raise SystemExit(main())
