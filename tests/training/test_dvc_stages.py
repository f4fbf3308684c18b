"""`dvc repro train_vae train_gan` in a throwaway git repo: real stages, tiny epochs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from genpipe.models import load_model
from tests.e2e.test_dvc_pipeline import commit, dvc, ran
from tests.e2e.tiny import shrink_params

pytestmark = pytest.mark.slow


def test_changing_gan_lr_reruns_only_the_gan_branch(project_copy: Path) -> None:
    shrink_params(project_copy, {"gan": {"epochs": 3}})
    first = dvc(project_copy, "repro", "train_vae", "train_gan")
    assert first.returncode == 0, first.stdout + first.stderr
    assert {"train_vae", "train_gan"} <= ran(first.stdout)
    for model in ("vae", "gan"):
        run = json.loads((project_copy / f"data/models/{model}/run.json").read_text())
        assert run["experiment_name"] == "genpipe-digits"
        assert not list((project_copy / f".genpipe/work/train_{model}").rglob("*.pt"))
        assert (project_copy / f"data/plots/train_{model}.csv").exists()
    snaps = sorted(p.name for p in (project_copy / "data/models/gan/snapshots").glob("*.pt"))
    assert snaps == ["epoch_0002.pt", "epoch_0003.pt"]
    g = load_model(project_copy / "data/models/gan/model.pt")
    assert g(torch.zeros(1, g.latent_dim)).shape == (1, 1, 8, 8)
    plots = dvc(project_copy, "plots", "show", "--json")
    assert plots.returncode == 0, plots.stderr
    drawn = json.loads(plots.stdout)["data"].values()  # the GAN curve's columns, with data
    assert any('"d_loss"' in json.dumps(p) and '"g_loss"' in json.dumps(p) for p in drawn)
    commit(project_copy, "trained")

    shrink_params(project_copy, {"gan": {"lr": {"generator": 0.0003}}})
    again = dvc(project_copy, "repro", "train_vae", "train_gan")
    assert again.returncode == 0, again.stdout + again.stderr
    # check_params reads every parameter; its output is constant, so nothing downstream follows it
    assert ran(again.stdout) - {"check_params"} == {"train_gan"}
