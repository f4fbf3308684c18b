"""Config of the shared team services (`services:` in params.yaml): PostgreSQL, the MLflow and
Prefect servers and the SSH server behind the DVC remote.

Every port, address and credential lives in params.yaml; an environment variable named after the
dotted key (`services.postgres.port` -> GENPIPE_SERVICES_POSTGRES_PORT) overrides it, so a host or
a test can move the services without editing the file. There are no defaults here: a missing key
is an error that names it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, Field, PositiveFloat, SecretStr, field_validator

from genpipe.config.base import Section

ENV_PREFIX = "GENPIPE_SERVICES_"

Port = Annotated[int, Field(ge=1024, le=65535)]
# PostgreSQL identifiers we create: lower-case, no quoting needed.
Identifier = Annotated[str, Field(pattern=r"^[a-z_][a-z0-9_]{0,62}$")]


class PostgresConfig(Section):
    """The PostgreSQL server that stores MLflow's and Prefect's state."""

    port: Port
    user: Identifier  # the password-protected role that owns both databases
    password: SecretStr | None  # None: generated once into the state folder
    mlflow_db: Identifier
    mlflow_auth_db: Identifier  # MLflow's basic-auth users and permissions
    prefect_db: Identifier
    os_user: str = Field(min_length=1)  # the unprivileged account postgres runs as under root
    connect_timeout_seconds: int = Field(ge=1, le=60)  # libpq/asyncpg connect timeout

    @field_validator("password")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 12:
            raise ValueError("must be at least 12 characters, or null to have one generated")
        return value


Account = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]


class MlflowServerConfig(Section):
    """`mlflow server --app-name basic-auth`: clients log in as `user`; `admin_user` manages
    accounts. Both passwords are generated into the state folder."""

    port: Port
    workers: int = Field(ge=1, le=16)
    user: Account
    admin_user: Account


class PrefectServerConfig(Section):
    """`prefect server start` with Prefect's API auth string `<user>:<generated password>`."""

    port: Port
    user: Account


class SupervisorConfig(Section):
    """supervisord's restart policy for every service (its `startsecs` and `startretries`)."""

    start_seconds: int = Field(ge=1, le=600)  # up this long counts as started
    start_retries: int = Field(ge=1, le=100)  # failed starts in a row before it gives up (FATAL)


class DvcRemoteConfig(Section):
    """The DVC remote: a folder of the state dir served by a dedicated sshd."""

    name: str = Field(pattern=r"^[A-Za-z0-9_-]+$")
    ssh_port: Port


class ClientConfig(Section):
    """How MLflow clients ride out a restarting server (MLflow's HTTP retry settings)."""

    http_max_retries: int = Field(ge=0, le=10)  # MLflow refuses more than 10
    http_backoff_factor: int = Field(ge=0, le=120)  # sleeps 0, 2f, 4f, ... seconds between tries
    http_timeout_seconds: int = Field(ge=1, le=3600)


class ServicesConfig(Section):
    """`services:` where the team services run and how clients reach them."""

    state_dir: Path  # relative to the project root; git-ignored
    host: str  # bind address of every service, and the address clients use
    postgres: PostgresConfig
    mlflow: MlflowServerConfig
    prefect: PrefectServerConfig
    dvc_remote: DvcRemoteConfig
    client: ClientConfig
    supervisor: SupervisorConfig
    start_timeout_seconds: PositiveFloat  # per service, until its readiness check passes
    stop_timeout_seconds: PositiveFloat  # the stop signal, then SIGKILL after this long

    @field_validator("host")
    @classmethod
    def _ip_address(cls, value: str) -> str:
        try:
            address = ipaddress.ip_address(value)
        except ValueError:
            raise ValueError("must be an IP address to bind to, e.g. 127.0.0.1") from None
        if address.is_unspecified:
            raise ValueError("must be the address clients use, not a wildcard (0.0.0.0 or ::)")
        return value

    def ports(self) -> dict[str, int]:
        """Each port with its dotted key, so a clash can name the key to change."""
        return {
            "services.postgres.port": self.postgres.port,
            "services.mlflow.port": self.mlflow.port,
            "services.prefect.port": self.prefect.port,
            "services.dvc_remote.ssh_port": self.dvc_remote.ssh_port,
        }


def env_overrides(raw: Mapping[str, Any], environ: Mapping[str, str]) -> dict[str, Any]:
    """`raw` (the `services:` mapping) with GENPIPE_SERVICES_* variables applied.

    A variable that matches no key is an error naming the known ones: a typo must not silently
    leave a service on its params.yaml value.
    """
    names = dict(_env_names(ServicesConfig))
    result = _deep_copy(raw)
    for var, value in environ.items():
        if not var.startswith(ENV_PREFIX):
            continue
        if var not in names:
            known = ", ".join(sorted(names))
            raise ValueError(f"{var}: no such services setting; known variables: {known}")
        node = result
        *parents, leaf = names[var]
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    return result


def env_var(dotted_key: str) -> str:
    """The variable overriding a key: services.postgres.port -> GENPIPE_SERVICES_POSTGRES_PORT."""
    return "GENPIPE_" + dotted_key.replace(".", "_").upper()


def _env_names(model: type[BaseModel], path: tuple[str, ...] = ()) -> Iterator[tuple[str, tuple]]:
    for name, field in model.model_fields.items():
        sub = field.annotation
        if isinstance(sub, type) and issubclass(sub, BaseModel):
            yield from _env_names(sub, (*path, name))
        else:
            yield env_var(".".join(("services", *path, name))), (*path, name)


def _deep_copy(raw: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _deep_copy(v) if isinstance(v, Mapping) else v for k, v in raw.items()}
