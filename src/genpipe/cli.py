"""`genpipe`: the people-facing CLI over the registry's champions.

    genpipe generate --n 64 --seed 0 --out grid.png
    genpipe restore noisy.png [--mask mask.png] --out clean.png
    genpipe registry show [TASK]
    genpipe registry rollback TASK
    genpipe serve TASK [--port 5001]     (what `make serve TASK=...` runs)
    genpipe share [-m MESSAGE]           (what `make share` runs: results to the team)

Models are loaded as `models:/<prefix>-<dataset>-<task>@champion` from the tracking URI in
MLFLOW_TRACKING_URI (default: the project's SQLite store); names come from params.yaml.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer

from genpipe.errors import GenpipeError

app = typer.Typer(
    no_args_is_help=True, add_completion=False, help="Use and manage genpipe's champion models."
)
registry_app = typer.Typer(
    no_args_is_help=True, help="Inspect and steer the MLflow model registry."
)
app.add_typer(registry_app, name="registry")

TASKS = ("generation", "restoration")
ParamsOpt = Annotated[Path, typer.Option(help="params.yaml naming the registered models")]
ModelOpt = Annotated[str | None, typer.Option(help="registered model name (default: from params)")]


def _fail(exc: Exception) -> typer.Exit:
    typer.echo(f"genpipe: error: {exc}", err=True)
    return typer.Exit(2)


def _name(task: str, params: Path, model: str | None) -> str:
    if task not in TASKS:
        raise GenpipeError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}")
    if model:
        return model
    from genpipe.config import load_params
    from genpipe.registry.decision import model_name

    p = load_params(params)
    return model_name(p.register.model_name_prefix, p.data.name, task)


def _load_champion(name: str) -> Any:
    import mlflow
    from mlflow.exceptions import MlflowException

    from genpipe.tracking import configure_mlflow

    uri = configure_mlflow()
    try:
        return mlflow.pyfunc.load_model(f"models:/{name}@champion")
    except MlflowException as exc:
        raise GenpipeError(
            f"no champion for {name!r} in {uri} ({exc.message[:200]}); `dvc repro` (or `make "
            "pipeline` on a fresh clone) trains and registers the champions"
        ) from None


def _save_grid(images: np.ndarray, out: Path, scale: int, pad: int = 1) -> None:
    """images [N, C, H, W] in [0, 1] -> one PNG, sqrt(N) per row, upscaled `scale` times."""
    import torch

    from genpipe.grids import save_grid

    tensor = torch.from_numpy(np.asarray(images, dtype=np.float32))
    save_grid(out, tensor, per_row=None, min_side=tensor.shape[-1] * scale, pad=pad)


def _read_image(path: Path, shape: list[int]) -> np.ndarray:
    """A PNG -> [C*H*W] floats in [0, 1] at the model's size (resized when it differs)."""
    from PIL import Image, UnidentifiedImageError

    c, h, w = shape
    try:
        img = Image.open(path).convert("L" if c == 1 else "RGB")
    except (FileNotFoundError, UnidentifiedImageError) as exc:
        raise GenpipeError(f"{path}: cannot read an image ({exc})") from None
    if img.size != (w, h):
        typer.echo(f"note: {path} is {img.size[0]}x{img.size[1]}; resized to {w}x{h}", err=True)
        img = img.resize((w, h), Image.BILINEAR)
    arr = np.asarray(img, dtype=np.float64) / 255.0
    return (arr[None] if c == 1 else arr.transpose(2, 0, 1)).reshape(-1)


@app.command()
def generate(
    n: Annotated[int, typer.Option(min=1, help="how many images")] = 64,
    seed: Annotated[int, typer.Option(help="sampling seed")] = 0,
    out: Annotated[Path, typer.Option(help="PNG grid to write")] = Path("grid.png"),
    scale: Annotated[int, typer.Option(min=1, help="upscale factor for viewing")] = 4,
    params: ParamsOpt = Path("params.yaml"),
    model: ModelOpt = None,
) -> None:
    """Sample images from the generation champion and save them as a grid."""
    import pandas as pd

    try:
        pyfunc = _load_champion(_name("generation", params, model))
        shape = pyfunc.metadata.metadata["image_shape"]
        frame = pyfunc.predict(pd.DataFrame({"n": [n], "seed": [seed]}))
        images = np.stack(frame["image"].to_numpy()).reshape(-1, *shape)
        _save_grid(images, out, scale)
    except GenpipeError as exc:
        raise _fail(exc) from None
    typer.echo(f"wrote {n} images to {out}")


@app.command()
def restore(
    image: Annotated[Path, typer.Argument(help="corrupted PNG")],
    mask: Annotated[Path | None, typer.Option(help="PNG mask: white = observed pixel")] = None,
    out: Annotated[Path, typer.Option(help="restored PNG to write")] = Path("clean.png"),
    scale: Annotated[int, typer.Option(min=1, help="upscale factor for viewing")] = 1,
    params: ParamsOpt = Path("params.yaml"),
    model: ModelOpt = None,
) -> None:
    """Restore one image with the restoration champion (inpaint where --mask is black)."""
    import pandas as pd

    try:
        pyfunc = _load_champion(_name("restoration", params, model))
        shape = pyfunc.metadata.metadata["image_shape"]
        row: dict[str, Any] = {"image": [_read_image(image, shape)]}
        if mask is not None:
            row["mask"] = [np.round(_read_image(mask, shape))]
        frame = pyfunc.predict(pd.DataFrame(row))
        _save_grid(np.asarray(frame["restored"][0]).reshape(1, *shape), out, scale, pad=0)
    except GenpipeError as exc:
        raise _fail(exc) from None
    typer.echo(f"wrote {out}")


@registry_app.command("rollback")
def rollback(
    task: Annotated[str, typer.Argument(help="generation | restoration")],
    params: ParamsOpt = Path("params.yaml"),
    model: ModelOpt = None,
) -> None:
    """Move `champion` back to the previous champion (recorded in the model's tags); the
    model left is never promoted again by `dvc repro`."""
    from genpipe.registry import mlflow_registry
    from genpipe.registry.lock import registry_lock
    from genpipe.tracking import configure_mlflow

    try:
        name = _name(task, params, model)
        with registry_lock(configure_mlflow()):
            moved = mlflow_registry.rollback(name)
    except GenpipeError as exc:
        raise _fail(exc) from None
    typer.echo(f"{name}: champion v{moved['from']} -> v{moved['to']}")


@registry_app.command("show")
def show(
    task: Annotated[
        str | None, typer.Argument(help="generation | restoration (default: both)")
    ] = None,
    params: ParamsOpt = Path("params.yaml"),
) -> None:
    """Print aliases, champion history and each version's metric as JSON."""
    from genpipe.registry import mlflow_registry
    from genpipe.tracking import configure_mlflow

    try:
        configure_mlflow()
        shown = {
            t: mlflow_registry.describe(_name(t, params, None)) for t in ([task] if task else TASKS)
        }
    except GenpipeError as exc:
        raise _fail(exc) from None
    typer.echo(json.dumps(shown, indent=2))


@app.command()
def share(
    message: Annotated[str, typer.Option("-m", "--message", help="commit message")] = (
        "pipeline results (genpipe share)"
    ),
    remote: Annotated[
        str | None, typer.Option(help="DVC remote (default: the default one)")
    ] = None,
) -> None:
    """Share this checkout's results with the team: outputs to the DVC remote, then the run
    records whose outputs arrived, then dvc.lock and the git-tracked outputs committed and
    pushed to the code remote. A teammate's `git pull && dvc pull` then has every stage."""
    import logging

    from genpipe import share as sharing
    from genpipe.settings import project_root

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("asyncssh").setLevel(logging.WARNING)
    try:
        typer.echo(sharing.share(project_root(), message, remote))
    except GenpipeError as exc:
        raise _fail(exc) from None


@app.command()
def serve(
    task: Annotated[str, typer.Argument(help="generation | restoration")],
    port: Annotated[int, typer.Option(help="port on --host")] = 5001,
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    workers: Annotated[int, typer.Option(min=1, help="uvicorn worker processes")] = 1,
    params: ParamsOpt = Path("params.yaml"),
    model: ModelOpt = None,
) -> None:
    """Serve the task's champion over HTTP with `mlflow models serve` (POST /invocations).

    Runs mlflow against the project's store (MLFLOW_TRACKING_URI, default mlflow/mlflow.db):
    a bare `mlflow` would open ./mlflow.db, find no model and leave an empty store behind. The
    venv's bin/ goes first on PATH because mlflow starts `uvicorn` from there.
    """
    import os
    import shutil
    import sys

    from genpipe.registry.mlflow_registry import champion_version
    from genpipe.tracking import configure_mlflow

    try:
        name = _name(task, params, model)
        uri = configure_mlflow()
        champion_version(name)
    except GenpipeError as exc:
        raise _fail(exc) from None
    bin_dir = str(Path(sys.executable).parent)
    path = os.pathsep.join([bin_dir, os.environ.get("PATH", "")])
    mlflow_cli = shutil.which("mlflow", path=path) or "mlflow"
    argv = [mlflow_cli, "models", "serve", "-m", f"models:/{name}@champion"]
    argv += ["--env-manager", "local", "--host", host, "--port", str(port)]
    argv += ["--workers", str(workers)]
    typer.echo(f"serving {name}@champion from {uri} on http://{host}:{port}/invocations", err=True)
    os.execvpe(mlflow_cli, argv, {**os.environ, "MLFLOW_TRACKING_URI": uri, "PATH": path})
