"""`python -m pipelines.worker --pool genpipe-gpu` (`make worker POOL=genpipe-gpu`): a worker host.

A worker host needs a checkout with the venv (`make install`: genpipe's dependencies; the code a
stage runs is the flow run's commit, fetched and installed per commit by pipelines.checkout) and
addresses, in the environment: PREFECT_API_URL, MLFLOW_TRACKING_URI and GENPIPE_DVC_REMOTE_URL,
plus GENPIPE_DVC_REMOTE_KEYFILE and GENPIPE_SSH_KNOWN_HOSTS for the team services' sshd (copy the
key and known_hosts files from the services host); `make -s services-env` there prints them all.

This checks those, that the Prefect and MLflow servers answer and that the pool exists, then
replaces itself with `prefect worker start` (one process), with:
- PREFECT_FLOWS_HEARTBEAT_FREQUENCY = orchestration.heartbeat_seconds, so the zombie automation
  notices when this host goes silent; PREFECT_WORKER_QUERY_SECONDS = worker_poll_seconds;
- GIT_SSH_COMMAND with the team key (pipelines.code_remote.git_ssh_command) for the fetches;
- GENPIPE_CPU_SHARE = `--limit`, the stages that may share this host's cores;
- `--limit` stage runs at a time (default 1: one stage owns the machine's accelerator and cores).
Run it under a supervisor that stops the whole process group (systemd: KillMode=control-group).
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
from collections.abc import Mapping
from pathlib import Path

from genpipe.errors import GenpipeError

REQUIRED = ("PREFECT_API_URL", "MLFLOW_TRACKING_URI")


class WorkerError(GenpipeError):
    """The worker cannot start: a missing address, a server that does not answer, no pool."""


def worker_env(
    environ: Mapping[str, str], heartbeat: int, poll: float, limit: int
) -> dict[str, str]:
    """The environment `prefect worker start` runs with (and passes to every stage run)."""
    from pipelines.code_remote import git_env

    missing = [v for v in REQUIRED if not environ.get(v)]
    if not environ.get("GENPIPE_DVC_REMOTE_URL"):
        missing.append("GENPIPE_DVC_REMOTE_URL")
    if missing:
        raise WorkerError(
            f"missing {', '.join(missing)}: a worker needs the addresses of the Prefect API, "
            "the MLflow server and the DVC remote. On the services host, `make -s services-env` "
            "prints them; set them here (eval, or a file you source) and start the worker again"
        )
    for var in ("GENPIPE_DVC_REMOTE_KEYFILE", "GENPIPE_SSH_KNOWN_HOSTS"):
        if environ.get(var) and not Path(environ[var]).is_file():
            raise WorkerError(f"{var}={environ[var]}: no such file on this host; copy it here")
    env = git_env(environ)
    bin_dir = str(Path(sys.executable).parent)
    env.update(
        {
            "PATH": os.pathsep.join([bin_dir, environ.get("PATH", "/usr/bin:/bin")]),
            "PREFECT_FLOWS_HEARTBEAT_FREQUENCY": str(heartbeat),
            "PREFECT_WORKER_QUERY_SECONDS": f"{poll:g}",
            "GENPIPE_CPU_SHARE": environ.get("GENPIPE_CPU_SHARE", str(limit)),
        }
    )
    return env


def check_servers(env: Mapping[str, str], pool: str, timeout: float = 10.0) -> None:
    """The Prefect API and MLflow answer, and the pool exists (`make deploy-stages` makes it)."""
    from genpipe.services.servers import http_probe

    api, mlflow = env["PREFECT_API_URL"].rstrip("/"), env["MLFLOW_TRACKING_URI"].rstrip("/")
    for name, url in (("the Prefect API", f"{api}/health"), ("MLflow", f"{mlflow}/health")):
        if mlflow.startswith(("sqlite:", "file:")) and name == "MLflow":
            raise WorkerError(
                f"MLFLOW_TRACKING_URI={mlflow} is a local store: a worker logs to the team's "
                "MLflow server (http://...)"
            )
        if (problem := http_probe(url, timeout)) is not None:
            raise WorkerError(f"{name} does not answer: {problem}")
    if (problem := http_probe(f"{api}/work_pools/{pool}", timeout)) is not None:
        raise WorkerError(
            f"work pool {pool!r} not found on {api} ({problem}): run `make deploy-stages` "
            "once on a machine with the project, then start the worker again"
        )


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
            print(
                f"warning: orchestration.pools sends no stage to {args.pool!r} "
                f"(pools: {', '.join(config.remote_pools())})",
                file=sys.stderr,
            )
        env = worker_env(
            os.environ, config.heartbeat_seconds, config.worker_poll_seconds, args.limit
        )
        check_servers(env, args.pool)
    except GenpipeError as exc:
        print(f"genpipe worker: error: {exc}", file=sys.stderr)
        return 2
    name = args.name or socket.gethostname()
    prefect = str(Path(sys.executable).parent / "prefect")
    argv_ = [prefect, "worker", "start", "--pool", args.pool, "--name", name, "--type", "process"]
    argv_ += ["--limit", str(args.limit)]
    print(f"genpipe worker {name}: {' '.join(argv_[1:])}", flush=True)
    os.execve(prefect, argv_, env)
    return 0  # not reached


if __name__ == "__main__":
    raise SystemExit(main())
