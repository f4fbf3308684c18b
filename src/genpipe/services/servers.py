"""The MLflow tracking server and the Prefect server, both on the shared PostgreSQL, both behind
credentials.

- MLflow: `mlflow server --app-name basic-auth`, its accounts in their own database. The admin
  account is created by MLflow from MLFLOW_AUTH_ADMIN_PASSWORD; `up` then creates the client
  account through MLflow's auth client. Without credentials the API answers 401.
- Prefect: `prefect server start` with PREFECT_SERVER_API_AUTH_STRING; clients send the same
  string (PREFECT_API_AUTH_STRING). Without it the API answers 401.
Both run from the interpreter's own bin/ folder (the project's venv).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import socket
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from typing import Any

from genpipe.config import ServicesConfig
from genpipe.services import postgres
from genpipe.services.credentials import Credentials, write_private
from genpipe.services.settings import Layout, url_host
from genpipe.services.supervisor import Program, venv_bin


def mlflow_url(config: ServicesConfig) -> str:
    return f"http://{url_host(config.host)}:{config.mlflow.port}"


def prefect_api_url(config: ServicesConfig) -> str:
    return f"http://{url_host(config.host)}:{config.prefect.port}/api"


def basic_auth(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def prefect_api_problem(
    api: str, path: str, environ: Mapping[str, str], timeout: float = 10.0
) -> str | None:
    """None if the Prefect API answers `path`, with the team's PREFECT_API_AUTH_STRING if set."""
    auth = environ.get("PREFECT_API_AUTH_STRING", "")
    header = basic_auth(*auth.split(":", 1)) if ":" in auth else None
    return http_probe(f"{api.rstrip('/')}{path}", timeout, header)


def prefect_api_unusable(environ: Mapping[str, str]) -> str | None:
    """Why the Prefect API in PREFECT_API_URL cannot be used, or None (unset: Prefect starts a
    temporary local one): one line instead of Prefect's traceback."""
    url = environ.get("PREFECT_API_URL")
    if not url or (problem := prefect_api_problem(url, "/admin/version", environ)) is None:
        return None
    return (
        f"the Prefect API at PREFECT_API_URL={url} cannot be used ({problem}). Start it "
        "(`make services-up`, or `make prefect-server`), set PREFECT_API_URL and "
        'PREFECT_API_AUTH_STRING with eval "$(make -s services-env)", or unset PREFECT_API_URL '
        "to run with a temporary local API"
    )


@contextlib.contextmanager
def prefect_api() -> Iterator[None]:
    """The Prefect API of PREFECT_API_URL (the environment's or the Prefect profile's) or, when
    none is set, a temporary local one as Prefect would start, but on a port the OS picks: Prefect
    picks at random in 8000-8999 and checks before its server binds, so two starting at once can
    take one port, and one process then talks to the other's server until that one stops. Like
    Prefect's, the server stops when the process exits, after Prefect's log and event workers
    have sent what they hold."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    if PREFECT_API_URL.value():
        yield
        return
    from prefect.server.api.server import SubprocessASGIServer

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = SubprocessASGIServer(port)
    server.start()
    with temporary_settings({PREFECT_API_URL: server.api_url}):
        yield


def http_probe(url: str, timeout: float, authorization: str | None = None) -> str | None:
    """None if `url` answers HTTP 200, else why not."""
    request = urllib.request.Request(url)
    if authorization:
        request.add_header("Authorization", authorization)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:
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
        if isinstance(parsed, dict):
            text = str(parsed.get("message") or parsed.get("exception_message") or text)
    return " ".join(text.split())[:limit]


def write_mlflow_auth_config(config: ServicesConfig, layout: Layout) -> None:
    """MLFLOW_AUTH_CONFIG_PATH: accounts in PostgreSQL (password from PGPASSFILE), READ by
    default (an account owns what it creates; only the admin grants more). A checked password is
    cached for a minute: otherwise every request of a stage pays a PBKDF2 hash on the server."""
    uri = postgres.mlflow_backend_uri(config, config.postgres.mlflow_auth_db)
    write_private(
        layout.mlflow_auth_config,
        "[mlflow]\n"
        "default_permission = READ\n"
        f"database_uri = {uri}\n"
        f"admin_username = {config.mlflow.admin_user}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
        "auth_cache_ttl_seconds = 60\n",
    )


def mlflow_program(config: ServicesConfig, layout: Layout, creds: Credentials) -> Program:
    """`mlflow server` on PostgreSQL with the basic-auth app, proxying artifacts so clients
    need only HTTP."""
    env = {
        "PGPASSFILE": str(layout.pgpass),
        "MLFLOW_AUTH_CONFIG_PATH": str(layout.mlflow_auth_config),
        "MLFLOW_AUTH_ADMIN_PASSWORD": creds.mlflow_admin,
        "MLFLOW_FLASK_SERVER_SECRET_KEY": creds.flask_secret,
        # the job runner keeps its queue in a SQLite file: nothing in services mode writes one
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
    }
    argv = [
        str(venv_bin() / "mlflow"), "server", "--app-name", "basic-auth",
        "--backend-store-uri", postgres.mlflow_backend_uri(config),
        "--artifacts-destination", str(layout.mlflow_artifacts),
        "--serve-artifacts",
        "--host", config.host, "--port", str(config.mlflow.port),
        "--workers", str(config.mlflow.workers),
    ]  # fmt: skip
    return Program("mlflow", argv, env, layout.root)


# Read through both SQL stores, so the worker has created their engines: a worker creates one on
# its first request and, if the database is down then, MLflow retries that for ~100 s per request
# (mlflow.store.db.utils.create_sqlalchemy_engine_with_retry); a warmed worker fails in seconds.
_MLFLOW_STORE_READS = (
    "/api/2.0/mlflow/experiments/search?max_results=1",
    "/api/2.0/mlflow/registered-models/search?max_results=1",
)


def mlflow_probe(url: str, timeout: float, authorization: str | None) -> str | None:
    """None once the server answers /health and reads from both of its stores."""
    for path in ("/health", *_MLFLOW_STORE_READS):
        if (problem := http_probe(url + path, timeout, authorization)) is not None:
            return problem
    return None


def ensure_mlflow_client_account(config: ServicesConfig, creds: Credentials) -> None:
    """The account clients log in as, created (or its password reset) by the admin through
    MLflow's own auth client."""
    from mlflow.exceptions import MlflowException
    from mlflow.server import get_app_client

    admin = {
        "MLFLOW_TRACKING_USERNAME": config.mlflow.admin_user,
        "MLFLOW_TRACKING_PASSWORD": creds.mlflow_admin,
    }
    with _environ(admin):
        client = get_app_client("basic-auth", tracking_uri=mlflow_url(config))
        try:
            client.get_user(config.mlflow.user)
        except MlflowException:
            client.create_user(config.mlflow.user, creds.mlflow_client)
        else:
            client.update_user_password(config.mlflow.user, creds.mlflow_client)


@contextlib.contextmanager
def _environ(values: Mapping[str, str]) -> Any:
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def prefect_program(config: ServicesConfig, layout: Layout, creds: Credentials) -> Program:
    """`prefect server start` on PostgreSQL, its home in the state folder, analytics off."""
    pg = config.postgres
    env = {
        "PREFECT_HOME": str(layout.prefect_home),
        "PREFECT_API_DATABASE_CONNECTION_URL": postgres.prefect_database_url(
            config, creds.postgres
        ),
        "PREFECT_API_DATABASE_CONNECTION_TIMEOUT": str(pg.connect_timeout_seconds),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_API_AUTH_STRING": creds.prefect_auth_string(config),
    }
    argv = [
        str(venv_bin() / "prefect"), "server", "start",
        "--host", config.host, "--port", str(config.prefect.port), "--no-background",
    ]  # fmt: skip
    return Program("prefect", argv, env, layout.root)


def prefect_probe(config: ServicesConfig, creds: Credentials | None) -> str | None:
    """None once the API is ready (its database reachable) and takes the auth string."""
    api, timeout = prefect_api_url(config), config.postgres.connect_timeout_seconds
    if (problem := http_probe(f"{api}/ready", timeout)) is not None:
        return problem
    if creds is None:
        return "no credentials in the state folder yet"
    return http_probe(f"{api}/admin/version", timeout, creds.prefect_header(config))
