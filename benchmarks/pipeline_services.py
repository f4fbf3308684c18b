"""The digits pipeline against the team services vs the local SQLite default, side by side.

Starts the services (`python -m genpipe.services up`: PostgreSQL, MLflow and Prefect servers, the
SSH DVC remote) in a temporary state folder on free ports, then runs a cold `dvc repro` in two
throwaway copies of the project, one after the other: one on the local SQLite store, one with
`make -s services-env`'s environment. Prints both wall times and their ratio, and stops the
services.

    python -m benchmarks.pipeline_services [--tiny]
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.conftest import copy_project
from tests.e2e.tiny import shrink_params

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def services(args: list[str], env: dict[str, str]) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "genpipe.services", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise SystemExit(f"genpipe.services {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return done.stdout


def cold_repro(project: Path, env: dict[str, str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(
        [str(BIN / "dvc"), "repro"], cwd=project, env=env, capture_output=True, text=True
    )
    if done.returncode != 0:
        raise SystemExit(f"dvc repro failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
    return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tiny", action="store_true", help="the tests' shrunken params")
    args = p.parse_args()
    base = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "GENPIPE_"))}
    base["PATH"] = f"{BIN}{os.pathsep}{os.environ['PATH']}"
    state = Path(tempfile.mkdtemp(prefix="gp-bench-svc-"))
    ports = {
        k: free_port()
        for k in ("POSTGRES_PORT", "MLFLOW_PORT", "PREFECT_PORT", "DVC_REMOTE_SSH_PORT")
    }
    svc_env = {
        **base,
        "GENPIPE_ROOT": str(REPO),
        "GENPIPE_SERVICES_STATE_DIR": str(state),
        **{f"GENPIPE_SERVICES_{k}": str(v) for k, v in ports.items()},
    }
    with tempfile.TemporaryDirectory() as tmp:
        copies = {}
        for name in ("sqlite", "services"):
            copies[name] = copy_project(Path(tmp) / name)
            if args.tiny:
                shrink_params(copies[name])
            (copies[name] / "dvc.lock").unlink(missing_ok=True)
        seconds = {"sqlite": cold_repro(copies["sqlite"], base)}
        try:
            services(["up"], svc_env)
            client = dict(base)
            for line in services(["env"], svc_env).splitlines():
                key, _, value = line.removeprefix("export ").partition("=")
                client[key] = value.strip("'")
            seconds["services"] = cold_repro(copies["services"], client)
        finally:
            services(["down"], svc_env)
    ratio = seconds["services"] / seconds["sqlite"]
    print(f"cold dvc repro, {'tiny' if args.tiny else 'shipped'} params (digits):")
    print(f"  local SQLite store:                 {seconds['sqlite']:7.1f} s")
    print(f"  team services (MLflow on PostgreSQL): {seconds['services']:5.1f} s  ({ratio:.2f}x)")
    print(f"load average now: {os.getloadavg()[0]:.1f} (2-core machine, shared)")


if __name__ == "__main__":
    main()
