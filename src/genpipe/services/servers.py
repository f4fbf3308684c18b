"""The MLflow tracking server and the Prefect server, both on the shared PostgreSQL.

Both run from the interpreter's own bin/ folder (the project's venv), with an environment built
here rather than inherited: a user's MLFLOW_* or PREFECT_* variables must not redirect a server.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path

from genpipe.config import ServicesConfig
from genpipe.services import postgres
from genpipe.services.processes import Service
from genpipe.services.settings import Layout, url_host


def venv_bin() -> Path:
    """bin/ of the running interpreter: `mlflow` and `prefect` live there, and `mlflow server`
    finds uvicorn on PATH."""
    return Path(sys.executable).parent


def _base_env() -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("MLFLOW_", "PREFECT_", "PG", "GENPIPE_"))
    }
    env["PATH"] = f"{venv_bin()}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}"
    return env


def mlflow_url(config: ServicesConfig) -> str:
    return f"http://{url_host(config.host)}:{config.mlflow.port}"


def prefect_api_url(config: ServicesConfig) -> str:
    return f"http://{url_host(config.host)}:{config.prefect.port}/api"


def http_probe(url: str, timeout: float) -> str | None:
    """None if `url` answers HTTP 200, else why not."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return None if resp.status == 200 else f"{url}: HTTP {resp.status}"
    except urllib.error.HTTPError as exc:
        return f"{url}: HTTP {exc.code}: {_message(exc.read())}"
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        return f"{url}: {reason}"


def _message(body: bytes, limit: int = 300) -> str:
    """The `message` of a JSON error body (MLflow's and Prefect's), else the body, on one line."""
    text = body.decode(errors="replace")
    with contextlib.suppress(ValueError):
        parsed = json.loads(text)
        text = str(parsed.get("message", text)) if isinstance(parsed, dict) else text
    return " ".join(text.split())[:limit]


def mlflow_service(config: ServicesConfig, layout: Layout) -> Service:
    """`mlflow server` on PostgreSQL, proxying artifacts so clients need only HTTP."""
    env = {
        **_base_env(),
        "PGPASSFILE": str(layout.pgpass),
        # the job runner keeps its queue in a SQLite file: nothing in services mode writes one
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
    }
    argv = [
        str(venv_bin() / "mlflow"), "server",
        "--backend-store-uri", postgres.mlflow_backend_uri(config),
        "--artifacts-destination", str(layout.mlflow_artifacts),
        "--serve-artifacts",
        "--host", config.host, "--port", str(config.mlflow.port),
        "--workers", str(config.mlflow.workers),
    ]  # fmt: skip
    url = mlflow_url(config)
    timeout = config.postgres.connect_timeout_seconds
    return Service(
        name="mlflow",
        argv=argv,
        env=env,
        cwd=layout.root,
        url=url,
        probe=lambda: mlflow_probe(url, timeout),
    )


# Read through both SQL stores, so the worker has created their engines: a worker creates one on
# its first request and, if the database is down then, MLflow retries that for ~100 s per request
# (mlflow.store.db.utils.create_sqlalchemy_engine_with_retry); a warmed worker fails in seconds.
_MLFLOW_STORE_READS = (
    "/api/2.0/mlflow/experiments/search?max_results=1",
    "/api/2.0/mlflow/registered-models/search?max_results=1",
)


def mlflow_probe(url: str, timeout: float) -> str | None:
    """None once the server answers /health and reads from both of its stores."""
    for path in ("/health", *_MLFLOW_STORE_READS):
        if (problem := http_probe(url + path, timeout)) is not None:
            return problem
    return None


def prefect_service(config: ServicesConfig, layout: Layout, password: str | None) -> Service:
    """`prefect server start` on PostgreSQL, its home in the state folder, analytics off."""
    pg = config.postgres
    env = {
        **_base_env(),
        "PREFECT_HOME": str(layout.prefect_home),
        "PREFECT_API_DATABASE_CONNECTION_URL": postgres.prefect_database_url(
            config, password or ""
        ),
        "PREFECT_API_DATABASE_CONNECTION_TIMEOUT": str(pg.connect_timeout_seconds),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }
    argv = [
        str(venv_bin() / "prefect"), "server", "start",
        "--host", config.host, "--port", str(config.prefect.port), "--no-background",
    ]  # fmt: skip
    api = prefect_api_url(config)
    return Service(
        name="prefect",
        argv=argv,
        env=env,
        cwd=layout.root,
        url=api,
        probe=lambda: http_probe(f"{api}/ready", pg.connect_timeout_seconds),  # ready: DB reachable
    )
