"""Overrides land in params.yaml as `dvc exp run -S` would write them, validated first."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from genpipe.overrides import OverrideError, apply_overrides, as_override_strings
from tests.params import raw_params


@pytest.fixture
def params(tmp_path: Path) -> Path:
    path = tmp_path / "project" / "params.yaml"
    path.parent.mkdir()
    path.write_text(yaml.safe_dump(raw_params()))
    return path


def test_dataset_switch_with_mirrors_and_a_hyperparameter(params: Path) -> None:
    before = yaml.safe_load(params.read_text())

    applied = apply_overrides(
        params,
        [
            "data.dataset=mnist",
            "data.download.mirrors=[http://127.0.0.1:8765/mnist/,https://mirror.example/mnist/]",
            "vae.epochs=2",
        ],
    )

    data = yaml.safe_load(params.read_text())
    assert applied[0] == "data.dataset=mnist"
    assert data["data"]["dataset"] == "mnist"
    assert data["data"]["download"]["mirrors"] == [
        "http://127.0.0.1:8765/mnist/",
        "https://mirror.example/mnist/",
    ]
    assert data["vae"]["epochs"] == 2
    assert data["gan"] == before["gan"]  # untouched keys keep their values


def test_dict_form_round_trips_awkward_values(params: Path) -> None:
    values = {
        "data.dataset": "folder",
        "data.folder": "C:\\images\\it's here\\",
        "gan.lr.generator": 0.0005,
        "runtime.compile": True,
        "evaluate.n_samples": None,
    }

    apply_overrides(params, values)

    data = yaml.safe_load(params.read_text())
    assert data["data"]["folder"] == "C:\\images\\it's here\\"
    assert data["gan"]["lr"]["generator"] == 0.0005
    assert data["runtime"]["compile"] is True
    assert data["evaluate"]["n_samples"] is None


def test_dvc_exp_run_set_param_writes_the_same_values(tmp_path: Path, params: Path) -> None:
    """Same semantics as `dvc exp run -S`: compare with DVC's own queue-side params update."""
    from dvc.utils.hydra import apply_overrides as dvc_apply

    reference = tmp_path / "reference.yaml"
    shutil.copy(params, reference)
    overrides = ["vae.beta=0.5", "evaluate.noise_sigmas=[0.2]"]

    apply_overrides(params, overrides)
    dvc_apply(reference, overrides)

    assert yaml.safe_load(params.read_text()) == yaml.safe_load(reference.read_text())


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("vae.epoch=2", r"Could not override 'vae\.epoch'"),
        ("vae.epochs=-1", r"vae\.epochs: Input should be greater than 0"),
        ("data.dataset=mnist", r"dataset .mnist. needs .* data\.download\.mirrors"),
        ("+vae.warmup=3", r"vae\.warmup: unknown key"),
    ],
)
def test_bad_override_names_the_key_and_leaves_params_untouched(
    params: Path, override: str, message: str
) -> None:
    before = params.read_text()

    with pytest.raises(OverrideError, match=message):
        apply_overrides(params, [override])

    assert params.read_text() == before
    assert [p.name for p in params.parent.iterdir()] == ["params.yaml"]  # no temp file left


def test_override_equal_to_current_value_does_not_rewrite(params: Path) -> None:
    before = params.read_text()

    assert apply_overrides(params, ["vae.epochs=60"]) == []

    assert params.read_text() == before


def test_malformed_overrides_are_rejected() -> None:
    with pytest.raises(OverrideError, match="key=value"):
        as_override_strings(["vae.epochs"])
    with pytest.raises(OverrideError, match="list of key=value"):
        as_override_strings("vae.epochs=2")


def test_shipped_mnist_preset_is_valid(params: Path) -> None:
    from genpipe.config import load_params
    from genpipe.overrides import read_preset

    repo = Path(__file__).resolve().parents[2]
    preset = read_preset(repo / "params" / "mnist.yaml")
    apply_overrides(params, [*preset, "data.download.mirrors=[http://127.0.0.1:8765/]"])
    loaded = load_params(params)
    assert loaded.data.dataset == "mnist" and loaded.data.download.splits == ["t10k"]
    assert loaded.evaluate.n_restore == 64


def test_shipped_gpu_preset_is_valid(params: Path) -> None:
    from genpipe.config import load_params
    from genpipe.overrides import read_preset

    repo = Path(__file__).resolve().parents[2]
    preset = read_preset(repo / "params" / "gpu.yaml")
    # the preset's header gives the mirror on the command line, as here
    apply_overrides(params, [*preset, "data.download.mirrors=[http://127.0.0.1:8765/]"])
    loaded = load_params(params)
    assert loaded.data.download.splits == ["train", "t10k"] and loaded.runtime.device == "cuda"
    assert loaded.vae.prior == "gmm" and loaded.gan.batch_size == 64


def test_a_malformed_preset_is_named(tmp_path: Path) -> None:
    from genpipe.errors import GenpipeError
    from genpipe.overrides import read_preset

    bad = tmp_path / "preset.yaml"
    bad.write_text("data.dataset: mnist\n")
    with pytest.raises(GenpipeError, match=str(bad)):
        read_preset(bad)
