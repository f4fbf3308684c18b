"""params.yaml becomes typed, validated config; errors name the key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from genpipe.config import ConfigError, Params, load_params

REPO = Path(__file__).resolve().parents[2]


def test_shipped_params_load() -> None:
    params = load_params(REPO / "params.yaml")
    assert params.data.dataset == "digits"
    assert params.validate_.min_rows["train"] > 0
    assert params.register_.model_name_prefix


def test_every_section_of_shipped_params_is_known() -> None:
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    assert set(raw) == {f.alias or name for name, f in Params.model_fields.items()}


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ({"vae": {"lattent_dim": 3}}, "vae.lattent_dim"),
        ({"gan": {"lr": {"generator": -1}}}, "gan.lr.generator"),
        ({"validate": {"min_rows": {"train": 0}}}, "validate.min_rows.train"),
        ({"evaluate": {"noise_sigmas": [0.1, -0.2]}}, "evaluate.noise_sigmas.1"),
        ({"train": {"device": "tpu"}}, "train.device"),
        ({"register": {"tie_rule": "coin"}}, "register.tie_rule"),
        ({"bogus": {}}, "bogus"),
    ],
)
def test_errors_name_the_key(raw: dict, key: str) -> None:
    with pytest.raises(ConfigError) as err:
        Params.from_dict(raw)
    assert f"- {key}:" in str(err.value)


def test_config_is_frozen() -> None:
    params = Params()
    with pytest.raises(Exception):  # noqa: B017 - pydantic raises ValidationError on frozen models
        params.vae.lr = 1.0  # type: ignore[misc]


def test_unreadable_params_file_is_named(tmp_path: Path) -> None:
    bad = tmp_path / "params.yaml"
    bad.write_text("data: [unclosed\n")
    with pytest.raises(ConfigError, match=str(bad)):
        load_params(bad)
    with pytest.raises(ConfigError, match="not found"):
        load_params(tmp_path / "missing.yaml")
