"""`python -m pipelines.worker --pool P` (`make worker POOL=P`): checks the addresses `make -s
services-env` prints and the servers, then becomes `prefect worker start` with heartbeats on,
the team's git key, and GENPIPE_CPU_SHARE = `--limit` (the stage runs sharing this host's cores).
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from genpipe import cpu
from genpipe.errors import GenpipeError


def worker_env(environ: Mapping[str, str], config: Any, limit: int) -> dict[str, str]:
    """The environment `prefect worker start` runs with (and passes to every stage run)."""
    from pipelines.code_remote import git_env

    needed = ("PREFECT_API_URL", "MLFLOW_TRACKING_URI", "GENPIPE_DVC_REMOTE_URL")
    missing = [v for v in needed if not environ.get(v)]
    if missing:
        raise GenpipeError(
            f"missing {', '.join(missing)}: a worker needs the addresses of the Prefect API, "
            "the MLflow server and the DVC remote. On the services host, `make -s services-env` "
            "prints them; set them here (eval, or a file you source) and start the worker again"
        )
    for var in ("GENPIPE_DVC_REMOTE_KEYFILE", "GENPIPE_SSH_KNOWN_HOSTS"):
        if environ.get(var) and not Path(environ[var]).is_file():
            raise GenpipeError(f"{var}={environ[var]}: no such file on this host; copy it here")
    return {
        **git_env(environ),
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), environ.get("PATH", "")]),
        "PREFECT_FLOWS_HEARTBEAT_FREQUENCY": str(config.heartbeat_seconds),
        "PREFECT_WORKER_QUERY_SECONDS": f"{config.worker_poll_seconds:g}",
        "GENPIPE_WORKER_COMMITS_KEPT": str(config.worker_commits_kept),
        **cpu.share_env(limit, environ),
        "PREFECT_CLIENT_RETRY_EXTRA_CODES": environ.get("PREFECT_CLIENT_RETRY_EXTRA_CODES", "500"),
    }


def check_servers(env: Mapping[str, str], pool: str, timeout: float = 10.0) -> None:
    """The Prefect API and MLflow answer, and the pool exists (`make deploy-stages` makes it)."""
    # fmt: off
    from genpipe.services.servers import http_probe, prefect_api_problem

    api, mlflow = env["PREFECT_API_URL"].rstrip("/"), env["MLFLOW_TRACKING_URI"].rstrip("/")
    if not mlflow.startswith("http"):
        raise GenpipeError(f"MLFLOW_TRACKING_URI={mlflow}: a worker logs to the team's MLflow server")
    for name, url in (("the Prefect API", f"{api}/health"), ("MLflow", f"{mlflow}/health")):
        if (problem := http_probe(url, timeout)) is not None:
            raise GenpipeError(f"{name} does not answer: {problem}")
    if (problem := prefect_api_problem(api, f"/work_pools/{pool}", env, timeout)) is not None:
        raise GenpipeError(f"work pool {pool!r} not found on {api} ({problem}): run `make "
                           "deploy-stages` once on a machine with the project, then start again")
    # fmt: on


def main(argv: list[str] | None = None) -> int:
    from genpipe.config import load_params
    from genpipe.settings import project_root

    p = argparse.ArgumentParser(prog="python -m pipelines.worker", description=__doc__)
    p.add_argument("--pool", required=True, help="the work pool, e.g. genpipe-gpu")
    p.add_argument("--limit", type=int, default=1, help="stage runs at a time (default 1)")
    p.add_argument("--name", default=None, help="worker name (default: this host's name)")
    args = p.parse_args(argv)
    try:
        config = load_params(project_root() / "params.yaml").orchestration
        if args.pool not in config.remote_pools():
            print(f"warning: orchestration.pools sends no stage to {args.pool!r}", file=sys.stderr)
        env = worker_env(os.environ, config, args.limit)
        check_servers(env, args.pool)
    except GenpipeError as exc:
        print(f"genpipe worker: error: {exc}", file=sys.stderr)
        return 2
    name = args.name or socket.gethostname()
    prefect = str(Path(sys.executable).parent / "prefect")
    argv_ = [prefect, "worker", "start", "--pool", args.pool, "--name", name, "--type", "process",
             "--limit", str(args.limit)]  # fmt: skip
    print(f"genpipe worker {name}: {' '.join(argv_[1:])}", flush=True)
    # Prefect stops on SIGTERM by raising SIGINT in itself; a shell starts background jobs with
    # SIGINT ignored, and an ignored signal stays ignored across exec, so one SIGTERM did nothing
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    os.execve(prefect, argv_, env)


if __name__ == "__main__":
    raise SystemExit(main())
