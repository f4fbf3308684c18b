"""The services config (params.yaml + GENPIPE_SERVICES_* variables) and the state folder's layout.

The layout is the one place that names files inside the state folder; every other module asks it.
"""

from __future__ import annotations

import os
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
    def run(self) -> Path:  # supervisord's socket and pid file, the manager's lock
        return self.root / "run"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    def log(self, service: str) -> Path:
        return self.logs / f"{service}.log"

    @property
    def supervisor_conf(self) -> Path:  # 0600: the services' environments hold secrets
        return self.root / "supervisord.conf"

    @property
    def supervisor_socket(self) -> Path:
        return self.run / "supervisor.sock"

    @property
    def secrets(self) -> Path:  # 0700: generated passwords, one 0600 file each
        return self.root / "secrets"

    def secret(self, name: str) -> Path:
        return self.secrets / name

    @property
    def postgres(self) -> Path:  # owned by the postgres account: data dir and socket
        return self.root / "postgres"

    @property
    def postgres_data(self) -> Path:
        return self.postgres / "data"

    @property
    def pgpass(self) -> Path:  # libpq's password file, so no password is on a command line
        return self.root / "pgpass"

    @property
    def mlflow_auth_config(self) -> Path:  # MLFLOW_AUTH_CONFIG_PATH of the basic-auth app
        return self.root / "mlflow-auth.ini"

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
        for folder in (self.ssh, self.dvc_remote, self.secrets):
            folder.mkdir(mode=0o700, exist_ok=True)


def write_private(path: Path, text: str) -> None:
    """Write a 0600 file atomically (temp file, then rename)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    tmp.replace(path)


def url_host(host: str) -> str:
    """An address as it goes into a URL (IPv6 in brackets)."""
    return f"[{host}]" if ":" in host else host
