"""params.yaml is written in the layout DVC's `-S` writes back, so a set changes only its line.

`dvc exp run -S` (and the flow's overrides) apply `dvc.utils.hydra.apply_overrides`: it loads
params.yaml with ruamel's round-trip loader, replaces every leaf value with a plain Python copy
(`merge_dicts`) and dumps with `default_flow_style=False`. Comments and flow-style mappings
survive; a plain list loses its flow style (`[a, b]` becomes one `- a` line per item) and a null
is dumped empty (`key:`). params.yaml is kept in that layout, which this test pins down.
"""

from __future__ import annotations

import difflib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, venv_bin


def set_params(path: Path, *overrides: str) -> list[str]:
    """Apply overrides the way `dvc exp run -S` does; returns the changed lines (+/-)."""
    from dvc.utils.hydra import apply_overrides

    before = path.read_text().splitlines()
    apply_overrides(path, list(overrides))
    after = path.read_text().splitlines()
    return [
        line
        for line in difflib.unified_diff(before, after, lineterm="", n=0)
        if line[:1] in "+-" and not line.startswith(("+++", "---"))
    ]


@pytest.fixture
def params(tmp_path: Path) -> Path:
    path = tmp_path / "params.yaml"
    shutil.copy(REPO / "params.yaml", path)
    return path


def test_dvc_rewrites_params_yaml_byte_for_byte(params: Path) -> None:
    """Setting a key to its current value rewrites every value: nothing may move."""
    import yaml

    seed = yaml.safe_load(params.read_text())["data"]["seed"]
    assert set_params(params, f"data.seed={seed}") == []


def current(params: Path, dotted: str) -> object:
    import yaml

    value: object = yaml.safe_load(params.read_text())
    for key in dotted.split("."):
        value = value[key]  # type: ignore[index]
    return value


def test_a_scalar_set_changes_its_line_only(params: Path) -> None:
    epochs = current(params, "vae.epochs")
    assert set_params(params, "vae.epochs=5") == [f"-  epochs: {epochs}", "+  epochs: 5"]


def test_a_list_set_changes_its_items_only(params: Path) -> None:
    betas = current(params, "gan.betas")
    assert set_params(params, "gan.betas=[0.5,0.99]") == [
        *(f"-  - {b}" for b in betas),  # type: ignore[attr-defined]
        "+  - 0.5",
        "+  - 0.99",
    ]


@pytest.mark.parametrize("override", ["evaluate.latent_search.steps=3", "data.max_images=400"])
def test_a_set_inside_a_flow_mapping_or_on_a_null_changes_one_line(
    params: Path, override: str
) -> None:
    changed = set_params(params, override)
    key = override.split("=")[0].rsplit(".", 1)[-1]
    assert [line[0] for line in changed] == ["-", "+"]
    assert all(key in line for line in changed)


@pytest.mark.slow
def test_dvc_exp_run_set_param_changes_one_line_of_the_real_params(tmp_path: Path) -> None:
    """A real `dvc exp run -S` in a temp git repo with the real params.yaml and a toy stage."""
    repo = tmp_path / "repo"
    repo.mkdir()
    shutil.copy(REPO / "params.yaml", repo / "params.yaml")
    (repo / "dvc.yaml").write_text(
        "stages:\n"
        "  epochs:\n"
        "    cmd: python -c \"import yaml; open('epochs.txt', 'w').write("
        "str(yaml.safe_load(open('params.yaml'))['vae']['epochs']))\"\n"
        "    params: [vae.epochs]\n"
        "    outs: [epochs.txt]\n"
    )
    env = {**os.environ, "PATH": f"{venv_bin()}{os.pathsep}{os.environ['PATH']}"}
    dvc = [sys.executable, "-m", "dvc"]
    for args in (
        ["git", "init", "-q"],
        [*dvc, "init", "-q"],
        [*dvc, "repro", "-q"],
        ["git", "add", "-A"],
        ["git", "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "base"],
        [*dvc, "exp", "run", "-S", "vae.epochs=5"],
    ):
        done = subprocess.run(args, cwd=repo, env=env, capture_output=True, text=True)
        assert done.returncode == 0, f"{args}: {done.stdout}{done.stderr}"

    assert (repo / "epochs.txt").read_text() == "5"
    epochs = current(REPO / "params.yaml", "vae.epochs")
    diff = subprocess.run(
        ["git", "diff", "-U0", "params.yaml"], cwd=repo, capture_output=True, text=True
    ).stdout
    changed = [ln for ln in diff.splitlines() if ln[:1] in "+-" and ln[:3] not in ("+++", "---")]
    assert changed == [f"-  epochs: {epochs}", "+  epochs: 5"]
