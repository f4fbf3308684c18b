"""params.yaml becomes typed, validated config; errors name the key."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from genpipe.config import ConfigError, Params, load_params
from tests.params import REPO, merge, raw_params


def test_shipped_params_load_into_every_section() -> None:
    params = load_params(REPO / "params.yaml")
    raw = raw_params()
    assert set(raw) == set(Params.sections())
    for name, section in Params.sections().items():
        loaded = getattr(params, name)
        assert isinstance(loaded, section)
        assert loaded.model_dump(mode="json") == yaml.safe_load(yaml.safe_dump(raw[name])), name


def test_config_classes_hold_no_values() -> None:
    """params.yaml is the one home of every value: no field may carry a default."""

    def defaults(section: type) -> list[str]:
        found = []
        for name, field in section.model_fields.items():
            if not field.is_required():
                found.append(f"{section.__name__}.{name}")
            for arg in getattr(field.annotation, "__args__", ()) or (field.annotation,):
                if isinstance(arg, type) and hasattr(arg, "model_fields"):
                    found += defaults(arg)
        return found

    assert [d for s in Params.sections().values() for d in defaults(s)] == []


@pytest.mark.parametrize(
    ("update", "key"),
    [
        ({"vae": {"lattent_dim": 3}}, "vae.lattent_dim"),
        ({"gan": {"lr": {"generator": -1}}}, "gan.lr.generator"),
        ({"validate": {"min_rows": {"train": 0}}}, "validate.min_rows.train"),
        ({"evaluate": {"noise_sigmas": [0.1, -0.2]}}, "evaluate.noise_sigmas.1"),
        ({"evaluate": {"ssim_gaussian": {"window": 10}}}, "evaluate.ssim_gaussian.window"),
        ({"evaluate": {"ssim_gaussian": {"sigma": 0}}}, "evaluate.ssim_gaussian.sigma"),
        ({"runtime": {"device": "tpu"}}, "runtime.device"),
        ({"register": {"tie_rule": "coin"}}, "register.tie_rule"),
        (
            {"register": {"seed_spread": {"dataset": "digits", "generation": -0.4}}},
            "register.seed_spread.generation",
        ),
        ({"register": {"seed_spread": {"restoration": 0.08}}}, "register.seed_spread.restoration"),
        ({"register": {"tie_rule": "seed_spread_keeps_champion"}}, "register.seed_spread"),
        ({"vae": {"epochs": "ten"}}, "vae.epochs"),
        ({"bogus": {}}, "bogus"),
    ],
)
def test_errors_name_the_key(update: dict, key: str) -> None:
    with pytest.raises(ConfigError) as err:
        Params.from_dict(merge(raw_params(), update))
    assert f"- {key}:" in str(err.value)


@pytest.mark.parametrize(
    ("register", "says"),
    [
        (
            {"seed_spread": {"dataset": "digits", "generation": 0}},
            ["a number > 0 as `make verdict-seeds` prints it, or empty when not measured"],
        ),
        (
            {"seed_spread": {"generation": 0.45}},
            ["needs register.seed_spread.dataset", "make verdict-seeds"],
        ),
        (
            {"tie_rule": "seed_spread_keeps_champion"},
            ["no task has a seed spread", "make verdict-seeds", "overlapping_ci_keeps_champion"],
        ),
    ],
)
def test_seed_spread_errors_say_what_to_type(register: dict, says: list[str]) -> None:
    with pytest.raises(ConfigError) as err:
        Params.from_dict(merge(raw_params(), {"register": register}))
    assert all(text in str(err.value) for text in says), str(err.value)


def test_the_seed_spread_rule_loads_with_one_task_measured() -> None:
    spread = {"dataset": "digits", "generation": 0.45, "restoration": None}
    raw = merge(raw_params(), {"register": {"tie_rule": "seed_spread_keeps_champion"}})
    register = Params.from_dict(merge(raw, {"register": {"seed_spread": spread}})).register
    assert register.seed_spread.generation == 0.45 and register.seed_spread.restoration is None


def test_a_missing_key_or_section_is_named() -> None:
    raw = raw_params()
    del raw["vae"]["lr"]
    del raw["register"]
    with pytest.raises(ConfigError) as err:
        Params.from_dict(raw)
    assert "- vae.lr: missing key" in str(err.value)
    assert "- register: missing section" in str(err.value)


def test_config_is_frozen() -> None:
    params = load_params(REPO / "params.yaml")
    with pytest.raises(Exception):  # noqa: B017 - pydantic raises ValidationError on frozen models
        params.vae.lr = 1.0  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        params.vae = params.vae  # type: ignore[misc]


def test_unreadable_params_file_is_named(tmp_path: Path) -> None:
    bad = tmp_path / "params.yaml"
    bad.write_text("data: [unclosed\n")
    with pytest.raises(ConfigError, match=str(bad)):
        load_params(bad)
    with pytest.raises(ConfigError, match="not found"):
        load_params(tmp_path / "missing.yaml")
