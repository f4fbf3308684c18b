"""The `services:` settings: params.yaml is their one home, GENPIPE_SERVICES_* override them, and a
bad value or a misspelt variable is an error naming it."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from genpipe.config import ConfigError
from genpipe.config.services import env_var
from genpipe.services import manager, system
from genpipe.services.settings import Layout, ServiceError, load_services_config
from tests.conftest import REPO


def test_the_project_params_load() -> None:
    config = load_services_config(REPO / "params.yaml", {})
    assert config.host == "127.0.0.1"
    assert len(set(config.ports().values())) == 4  # no two services on one port


def _layout(config, folder: Path) -> Layout:
    """A state folder with its secrets, as the first `up` leaves it."""
    from genpipe.services import credentials

    layout = Layout(folder)
    layout.prepare()
    credentials.ensure(config, layout)
    return layout


def test_environment_overrides_a_nested_key(tmp_path: Path) -> None:
    env = {"GENPIPE_SERVICES_POSTGRES_PORT": "6543", "GENPIPE_SERVICES_HOST": "10.20.0.1"}
    config = load_services_config(REPO / "params.yaml", env)
    assert config.postgres.port == 6543
    assert config.host == "10.20.0.1"
    environment = manager.client_environment(config, _layout(config, tmp_path / "state"))
    assert environment["MLFLOW_TRACKING_URI"] == f"http://10.20.0.1:{config.mlflow.port}"
    assert environment["PREFECT_API_URL"] == f"http://10.20.0.1:{config.prefect.port}/api"
    assert environment["GENPIPE_DVC_REMOTE_URL"].endswith(
        f"@10.20.0.1:{config.dvc_remote.ssh_port}{tmp_path}/state/dvc-remote"
    )
    # another checkout with these exports finds the same services
    assert environment["GENPIPE_SERVICES_POSTGRES_PORT"] == "6543"
    assert environment["GENPIPE_SERVICES_STATE_DIR"] == f"{tmp_path}/state"
    again = load_services_config(REPO / "params.yaml", environment)
    assert again == config.model_copy(update={"state_dir": Path(f"{tmp_path}/state")})


def test_ipv6_hosts_are_bracketed_in_urls(tmp_path: Path) -> None:
    config = load_services_config(REPO / "params.yaml", {"GENPIPE_SERVICES_HOST": "::1"})
    environment = manager.client_environment(config, _layout(config, tmp_path))
    assert environment["MLFLOW_TRACKING_URI"] == f"http://[::1]:{config.mlflow.port}"


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"GENPIPE_SERVICES_MLFLOW_PORT": "80"}, "services.mlflow.port"),
        ({"GENPIPE_SERVICES_HOST": "0.0.0.0"}, "services.host"),
        ({"GENPIPE_SERVICES_HOST": "localhost"}, "services.host"),
        ({"GENPIPE_SERVICES_POSTGRES_PASSWORD": "short"}, "services.postgres.password"),
        ({"GENPIPE_SERVICES_POSTGRES_USER": "Robert'); DROP"}, "services.postgres.user"),
        ({"GENPIPE_SERVICES_POSTGRE_PORT": "6000"}, "GENPIPE_SERVICES_POSTGRE_PORT"),
    ],
)
def test_bad_values_name_the_key(env: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError, match="GENPIPE_SERVICES_") as err:
        load_services_config(REPO / "params.yaml", env)
    assert named in str(err.value)


def test_a_missing_key_is_an_error_not_a_default(tmp_path: Path) -> None:
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    del raw["services"]["mlflow"]["workers"]
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match=r"services\.mlflow\.workers"):
        load_services_config(path, {})
    del raw["services"]
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match="- services: missing section"):
        load_services_config(path, {})


def test_env_var_names() -> None:
    assert env_var("services.dvc_remote.ssh_port") == "GENPIPE_SERVICES_DVC_REMOTE_SSH_PORT"


def test_missing_programs_name_the_debian_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(system, "find", lambda program: None if program == "sshd" else Path("/x"))
    with pytest.raises(ServiceError, match=r"apt-get install openssh-server"):
        system.require()
