"""The services' secrets: generated once into the state folder's `secrets/` (0700, one 0600 file
each), never on a command line.

- the PostgreSQL role's password (or `services.postgres.password` from params/env);
- MLflow's basic-auth admin (manages accounts; stays on the services host) and the client
  account every checkout logs in as;
- Prefect's API auth string `<user>:<password>` (server and clients share it);
- the Flask secret key of MLflow's auth app (CSRF).
"""

from __future__ import annotations

import base64
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from genpipe.config import ServicesConfig
from genpipe.services.settings import Layout

_NAMES = ("postgres.password", "mlflow-admin.password", "mlflow-client.password")
_NAMES += ("prefect.password", "mlflow-flask.secret")


def write_private(path: Path, text: str) -> None:
    """Write a 0600 file atomically (temp file, then rename)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    tmp.replace(path)


@dataclass(frozen=True)
class Credentials:
    postgres: str
    mlflow_admin: str
    mlflow_client: str
    prefect: str
    flask_secret: str

    def prefect_auth_string(self, config: ServicesConfig) -> str:
        return f"{config.prefect.user}:{self.prefect}"

    def prefect_header(self, config: ServicesConfig) -> str:
        token = base64.b64encode(self.prefect_auth_string(config).encode()).decode()
        return f"Basic {token}"


def ensure(config: ServicesConfig, layout: Layout) -> Credentials:
    """Every secret, generating the missing ones (the first `up`)."""
    for name in _NAMES:
        path = layout.secret(name)
        if not path.exists():
            write_private(path, secrets.token_urlsafe(24) + "\n")
    found = saved(config, layout)
    assert found is not None
    return found


def saved(config: ServicesConfig, layout: Layout) -> Credentials | None:
    """The secrets if `up` has made them (status and env must not create the state folder)."""
    try:
        values = [layout.secret(name).read_text().strip() for name in _NAMES]
    except FileNotFoundError:
        return None
    if config.postgres.password is not None:
        values[0] = config.postgres.password.get_secret_value()
    return Credentials(*values)
