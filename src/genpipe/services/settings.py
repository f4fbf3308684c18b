"""The services config (params.yaml + GENPIPE_SERVICES_* variables) and the state folder's layout.

The layout is the one place that names files inside the state folder; every other module asks it.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from genpipe.config import ConfigError, ServicesConfig, load_params
from genpipe.config.services import ENV_PREFIX, env_overrides
from genpipe.errors import GenpipeError
from genpipe.settings import project_root


class ServiceError(GenpipeError):
    """A service cannot be started, stopped or reached; the message names it and what to do."""


def load_services_config(
    params_path: Path | None = None, environ: Mapping[str, str] | None = None
) -> ServicesConfig:
    """The `services:` section of params.yaml with GENPIPE_SERVICES_* overrides applied."""
    environ = os.environ if environ is None else environ
    params_path = params_path or project_root() / "params.yaml"
    section = load_params(params_path).services
    try:
        raw = env_overrides(section.model_dump(), environ)
        return ServicesConfig.model_validate(raw)
    except ValueError as exc:  # ValidationError is a ValueError
        if isinstance(exc, ValidationError):
            lines = [
                f"  - services.{'.'.join(map(str, e['loc']))}: {e['msg']} (got {e.get('input')!r})"
                for e in exc.errors()
            ]
            exc = "\n".join(lines)
        raise ConfigError(
            f"invalid services settings from {params_path} and {ENV_PREFIX}* variables:\n{exc}"
        ) from None


@dataclass(frozen=True)
class Layout:
    """Paths inside the state folder (absolute)."""

    root: Path

    @classmethod
    def of(cls, config: ServicesConfig, project: Path | None = None) -> Layout:
        return cls((project or project_root()) / config.state_dir)

    @property
    def run(self) -> Path:  # pid files and the manager's lock
        return self.root / "run"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    def pidfile(self, service: str) -> Path:
        return self.run / f"{service}.pid"

    def log(self, service: str) -> Path:
        return self.logs / f"{service}.log"

    @property
    def postgres(self) -> Path:  # owned by the postgres account: data dir and socket
        return self.root / "postgres"

    @property
    def postgres_data(self) -> Path:
        return self.postgres / "data"

    @property
    def postgres_password(self) -> Path:
        return self.root / "postgres.password"

    @property
    def pgpass(self) -> Path:  # libpq's password file, so no password is on a command line
        return self.root / "pgpass"

    @property
    def mlflow_artifacts(self) -> Path:
        return self.root / "mlflow-artifacts"

    @property
    def prefect_home(self) -> Path:
        return self.root / "prefect"

    @property
    def ssh(self) -> Path:  # sshd config, host key, client key, authorized_keys, known_hosts
        return self.root / "ssh"

    @property
    def dvc_remote(self) -> Path:
        return self.root / "dvc-remote"

    @property
    def code_repo(self) -> Path:  # bare git repo workers clone a flow run's commit from
        return self.root / "code.git"

    def prepare(self) -> None:
        for folder in (self.root, self.run, self.logs, self.mlflow_artifacts, self.prefect_home):
            folder.mkdir(parents=True, exist_ok=True)
        # The postgres account must traverse to its data dir; nothing here is secret but keys
        # and passwords, which are 0600 files.
        self.root.chmod(0o711)
        for folder in (self.ssh, self.dvc_remote):
            folder.mkdir(mode=0o700, exist_ok=True)


def write_private(path: Path, text: str) -> None:
    """Write a 0600 file atomically (temp file, then rename)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    tmp.replace(path)


def postgres_password(config: ServicesConfig, layout: Layout) -> str:
    """The role's password: from params/env, else generated once into the state folder."""
    if config.postgres.password is not None:
        return config.postgres.password.get_secret_value()
    if not layout.postgres_password.exists():
        write_private(layout.postgres_password, secrets.token_urlsafe(24) + "\n")
    return layout.postgres_password.read_text().strip()


def url_host(host: str) -> str:
    """An address as it goes into a URL (IPv6 in brackets)."""
    return f"[{host}]" if ":" in host else host
