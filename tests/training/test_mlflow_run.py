"""What a training run leaves behind: the MLflow run (params, tags, curves, images,
artifacts) in a temporary SQLite store, and the model dir the evaluate stage reads."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable

import mlflow
import pytest
import torch
from PIL import Image

from genpipe.models import load_model
from genpipe.models.gan import Generator
from genpipe.models.vae import VAE
from genpipe.training.run import TrainPaths, train
from tests.params import tiny_params


def _artifacts(client: mlflow.MlflowClient, run_id: str, path: str = "") -> set[str]:
    found: set[str] = set()
    for item in client.list_artifacts(run_id, path):
        found |= _artifacts(client, run_id, item.path) if item.is_dir else {item.path}
    return found


@pytest.mark.parametrize("model", ["vae", "gan"])
def test_run_contents_and_model_dir(
    model: str, train_paths: Callable[[str], TrainPaths], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GENPIPE_PIPELINE_RUN_ID", "flow-run-42")
    paths = train_paths(model)
    params = tiny_params()
    epochs = params.vae.epochs if model == "vae" else params.gan.epochs
    result = train(model, params, paths)

    client = mlflow.MlflowClient()
    run = client.get_run(result.run_id)
    assert run.info.status == "FINISHED"
    assert run.info.run_name == f"train_{model}"
    assert client.get_experiment(run.info.experiment_id).name == "genpipe-digits"
    assert run.data.params["train.batch_size"] == str(params.train.batch_size)
    assert run.data.params[f"{model}.base_channels"] == "8"
    if model == "gan":  # nested keys flattened
        assert run.data.params["gan.lr.discriminator"] == str(params.gan.lr.discriminator)
    tags = run.data.tags
    meta = json.loads((paths.prepared / "meta.json").read_text())
    assert tags["genpipe.stage"] == f"train_{model}"
    assert tags["genpipe.data_hash"] == meta["data_hash"]
    assert tags["genpipe.device"] == "cpu"
    assert tags["genpipe.pipeline_run_id"] == "flow-run-42"
    assert tags["genpipe.torch_version"] == torch.__version__
    assert "genpipe.git_commit" in tags and tags["genpipe.host"]

    curves = (
        ["train_loss", "val_loss"] if model == "vae" else ["d_loss", "g_loss", "d_real", "d_fake"]
    )
    for name in curves:
        history = client.get_metric_history(result.run_id, name)
        assert [m.step for m in history] == list(range(1, epochs + 1)), name

    artifacts = _artifacts(client, result.run_id)
    grids = ["samples", "recon"] if model == "vae" else ["samples"]
    for grid in grids:  # log_images_every=2, plus the last epoch
        assert {f"{grid}/epoch_0002.png", f"{grid}/epoch_{epochs:04d}.png"} <= artifacts
        assert f"{grid}/epoch_0001.png" not in artifacts
        assert f"{grid}.png" in artifacts
    assert "model/model.pt" in artifacts

    # the model dir: run.json, loadable model file, preview PNGs, DVC plots
    record = json.loads((paths.out / "run.json").read_text())
    assert record.pop("work_key")  # names the resume folder tracking.clean_orphans may drop
    assert record == {
        "run_id": result.run_id,
        "experiment_id": run.info.experiment_id,
        "experiment_name": "genpipe-digits",
    }
    loaded = load_model(paths.out / "model.pt")
    assert isinstance(loaded, VAE if model == "vae" else Generator)
    assert loaded.sample(3, torch.Generator().manual_seed(0)).shape == (3, 1, 8, 8)
    for grid in grids:
        assert Image.open(paths.out / f"{grid}.png").size[0] > 8 * 8
    with paths.plots.open() as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["epoch"]) for r in rows] == list(range(1, epochs + 1))
    assert set(curves) <= set(rows[0])

    if model == "gan":  # EMA snapshots over the second half, the last epoch included
        snaps = sorted(p.name for p in (paths.out / "snapshots").glob("*.pt"))
        assert snaps == ["epoch_0003.pt", "epoch_0004.pt"]
        snap = load_model(paths.out / "snapshots" / "epoch_0004.pt")
        final = load_model(paths.out / "model.pt")
        z = torch.randn(2, final.latent_dim)
        assert torch.equal(snap(z), final(z))  # the last snapshot is the final EMA generator
        assert {"model/snapshots/epoch_0003.pt", "model/snapshots/epoch_0004.pt"} <= artifacts
