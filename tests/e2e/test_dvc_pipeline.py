"""`dvc repro` end to end in a throwaway git repo: the real stages, shrunk params, a real MLflow
SQLite store. The state DVC keeps right: run-cache, crash recovery, the registry."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest
import torch

from genpipe.models import load_model
from tests.conftest import dvc_stages, venv_bin
from tests.e2e.tiny import shrink_params

pytestmark = pytest.mark.slow

STAGES = set(dvc_stages())
# the run after a promotion: the snapshot shows this checkout's own champion, whose numbers are
# the report's (no model runs), and register finds the registry already holds the decision
RESNAPSHOT = {"champions", "score_champions", "decide", "register"}


def dvc(project: Path, *args: str, timeout: float = 1800) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{venv_bin()}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run(
        [str(venv_bin() / "dvc"), *args],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def repro(project: Path, *args: str) -> str:
    done = dvc(project, "repro", *args)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    return done.stdout + done.stderr


def ran(output: str) -> set[str]:
    """Names of the stages whose command `dvc repro` actually executed."""
    return {
        line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage '")
    }


def commit(project: Path, message: str) -> None:
    for args in (
        ["add", "-A"],
        ["-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", message],
    ):
        subprocess.run(["git", *args], cwd=project, check=True, capture_output=True)


def kill_after_first_checkpoint(
    project: Path, stage: str, chosen: Callable[[psutil.Process], bool]
) -> None:
    """Run `dvc repro <stage>`; once its first checkpoint is written, SIGKILL the one process of
    the stage that `chosen` picks (no clean-up runs); DVC fails, and no process of the stage is
    left running."""
    env = {**os.environ, "PATH": f"{venv_bin()}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.Popen(
        [str(venv_bin() / "dvc"), "repro", stage],
        cwd=project,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    work = project / ".genpipe/work" / stage
    while not list(work.glob("*/last.pt")):
        assert proc.poll() is None, proc.communicate()[0][-3000:]
        time.sleep(0.05)
    running = [
        p
        for p in psutil.Process(proc.pid).children(recursive=True)
        # DVC runs the cmd through a shell, which may stay as the python process's parent
        if p.name().startswith("python") and "genpipe.stages.train" in " ".join(p.cmdline())
    ]
    found = [p for p in running if chosen(p)]
    assert len(found) == 1, found
    found[0].kill()
    output, _ = proc.communicate(timeout=600)
    assert proc.returncode != 0, output
    _, alive = psutil.wait_procs(running, timeout=60)
    assert not alive, alive


def digest(project: Path, *paths: str) -> dict[str, str]:
    """sha256 of every file under `paths` (run.json and MLflow ids included)."""
    found = {}
    for rel in paths:
        root = project / rel
        for f in sorted([root] if root.is_file() else root.rglob("*")):
            if f.is_file():
                found[str(f.relative_to(project))] = hashlib.sha256(f.read_bytes()).hexdigest()
    return found


REGISTRY_SCRIPT = """
import json, sys
from mlflow import MlflowClient
client = MlflowClient(tracking_uri=sys.argv[1])
found = {}
for model in client.search_registered_models():
    versions = client.search_model_versions(f"name = '{model.name}'")
    found[model.name] = {
        "versions": sorted(int(v.version) for v in versions),
        "champion": model.aliases.get("champion"),
    }
print(json.dumps(found))
"""


def registry(project: Path) -> dict[str, dict]:
    """name -> {versions, champion} in the project's MLflow store, read by MLflow's client.

    In a process of its own: a client caches its store per URI, and after the test deletes
    mlflow.db that cached engine would still read the deleted file.
    """
    uri = f"sqlite:///{project / 'mlflow' / 'mlflow.db'}"
    done = subprocess.run(
        [sys.executable, "-c", REGISTRY_SCRIPT, uri], capture_output=True, text=True, check=True
    )
    found = json.loads(done.stdout)
    return {
        name: {**state, "champion": None if state["champion"] is None else str(state["champion"])}
        for name, state in found.items()
    }


def test_pipeline_revert_wiped_store_protocol_change_and_another_dataset(project: Path) -> None:
    first = repro(project)
    assert ran(first) == STAGES
    meta = json.loads((project / "data/prepared/meta.json").read_text())
    assert meta["dataset"] == "digits" and sum(meta["counts"].values()) == 1797
    decision = json.loads((project / "data/register/decision.json").read_text())
    headline = json.loads((project / "data/metrics.json").read_text())
    for task in ("generation", "restoration"):
        winner = decision["tasks"][task]["verdict"]["winner"]["family"]
        assert headline[task]["winner"] == winner
    state = registry(project)
    assert {n: s["versions"] for n, s in state.items()} == {
        "genpipe-digits-generation": [1],
        "genpipe-digits-restoration": [1],
    }
    # the trainings' records: their MLflow experiment, cleared checkpoints, curves, a usable GAN
    for model in ("vae", "gan"):
        run = json.loads((project / f"data/models/{model}/run.json").read_text())
        assert run["experiment_name"] == "genpipe-digits"
        assert not list((project / f".genpipe/work/train_{model}").rglob("*.pt"))
    snaps = sorted(p.name for p in (project / "data/models/gan/snapshots").glob("*.pt"))
    assert snaps and snaps[-1] == "epoch_0002.pt", snaps  # the tiny GAN's last of 2 epochs
    g = load_model(project / "data/models/gan/model.pt")
    assert g(torch.zeros(1, g.latent_dim)).shape == (1, 1, 8, 8)
    plots = dvc(project, "plots", "show", "--json")
    assert plots.returncode == 0, plots.stderr
    drawn = json.loads(plots.stdout)["data"].values()  # the GAN curve's columns, with data
    assert any('"d_loss"' in json.dumps(p) and '"g_loss"' in json.dumps(p) for p in drawn)
    commit(project, "first run")
    outputs = digest(project, "data/models", "data/eval/report.json", "data/plots")

    again = repro(project)
    assert ran(again) == RESNAPSHOT, again
    assert "champion v1 = the new" in again  # score_champions reused the report's numbers
    assert ran(repro(project)) == {"champions"}  # the no-op: only the snapshot runs

    # typos fail in check_params, before DVC deletes the outputs of the stage that reads them
    for typo in ({"gan": {"epochs": -3}}, {"data": {"image_size": "abc"}}):
        shrink_params(project, typo)
        failed = dvc(project, "repro")
        assert failed.returncode != 0
        key = ".".join([next(iter(typo)), next(iter(next(iter(typo.values()))))])
        assert "genpipe check_params: error:" in failed.stderr and key in failed.stderr
        assert ran(failed.stdout + failed.stderr) <= {"check_params", "champions"}
        assert digest(project, "data/models", "data/eval/report.json", "data/plots") == outputs
        subprocess.run(["git", "checkout", "params.yaml"], cwd=project, check=True)

    # another protocol: the champion is scored beside the new candidates under it
    shrink_params(project, {"evaluate": {"noise_sigmas": [0.2, 0.4]}})
    rescored = repro(project)
    assert {"evaluate", "score_champions", "decide"} <= ran(rescored)
    assert "train_gan" not in ran(rescored) and "train_vae" not in ran(rescored)
    held = json.loads((project / "data/eval/incumbents.json").read_text())
    decision = json.loads((project / "data/register/decision.json").read_text())
    for task in ("generation", "restoration"):
        incumbent = held["tasks"][task]["champion"]
        assert incumbent["scored"] and incumbent["version"] == "1", incumbent
        metric = decision["tasks"][task]["metric"]
        assert incumbent["scores"][metric]["value"] is not None
        d = decision["tasks"][task]
        if incumbent["same_as"] == d["verdict"]["winner"]["family"]:
            assert d["champion"] == "incumbent"  # the champion is the best new candidate itself

    # the protocol changed back: its outputs come back from DVC's run-cache, and nothing is
    # registered (a param change that retrains, changed back: the README's experiment block)
    versions = {n: s["versions"] for n, s in registry(project).items()}
    subprocess.run(["git", "checkout", "params.yaml"], cwd=project, check=True)
    back = repro(project)  # may re-snapshot a champion the change promoted
    assert "evaluate" not in ran(back) and "train_gan" not in ran(back), back
    assert digest(project, "data/models", "data/eval/report.json", "data/plots") == outputs
    assert {n: s["versions"] for n, s in registry(project).items()} == versions

    # the MLflow store is deleted: dvc repro puts the champions back, once
    for path in (project / "mlflow").iterdir():
        if path.name != "README.md":
            subprocess.run(["rm", "-rf", str(path)], check=True)
    refilled = repro(project)
    # decide's inputs are the first run's again (no champion): DVC restores it from its run-cache
    assert {"champions", "score_champions", "register"} <= ran(refilled) <= RESNAPSHOT
    assert {n: (s["versions"], s["champion"]) for n, s in registry(project).items()} == {
        "genpipe-digits-generation": ([1], "1"),
        "genpipe-digits-restoration": ([1], "1"),
    }
    # the snapshot of the refill (decide's inputs are the second run's: restored, not run)
    assert {"champions", "score_champions", "register"} <= ran(repro(project)) <= RESNAPSHOT
    assert ran(repro(project)) == {"champions"}
    assert {n: s["versions"] for n, s in registry(project).items()} == {
        "genpipe-digits-generation": [1],
        "genpipe-digits-restoration": [1],
    }

    # another dataset, an image folder: its own registered models, so digits' champions are not
    # its incumbents (the folder source's loading: tests/data/test_folder.py)
    _image_folder(project / "images", 100)
    shrink_params(project, {"data": {"dataset": "folder", "folder": "images"}})
    assert ran(repro(project, "champions")) == {"champions"}
    snapshot = json.loads((project / "data/registry/champions.json").read_text())
    digits = registry(project)
    for task, held in snapshot["tasks"].items():
        assert held["model_name"] == f"genpipe-folder-images-{task}"
        assert held["champion"] is None and digits[f"genpipe-digits-{task}"]["champion"]


def test_killed_training_resumes_to_the_same_result(project: Path, tmp_path: Path) -> None:
    shrink_params(
        project, {"gan": {"epochs": 30, "snapshots": 2}, "runtime": {"checkpoint_every": 2}}
    )
    (project / "dvc.lock").unlink(missing_ok=True)
    repro(project, "validate")
    reference = tmp_path / "reference"  # the same data and params, never interrupted
    shutil.copytree(project, reference, symlinks=True)
    repro(reference, "train_gan")
    uninterrupted = (reference / "data/plots/train_gan.csv").read_bytes()

    kill_after_first_checkpoint(project, "train_gan", lambda p: True)

    resumed = repro(project, "train_gan")
    assert ran(resumed) == {"train_gan"}
    assert "resuming gan from" in resumed
    assert (project / "data/plots/train_gan.csv").read_bytes() == uninterrupted
    assert not list((project / ".genpipe/work/train_gan").glob("*/last.pt"))  # cleared

    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow' / 'mlflow.db'}")
    experiments = [e.experiment_id for e in client.search_experiments()]
    assert client.search_runs(experiments, "attributes.status = 'RUNNING'") == []
    killed = json.loads((project / "data/models/gan/run.json").read_text())["run_id"]
    assert client.get_run(killed).info.status == "FINISHED"  # the killed run was continued


def _image_folder(root: Path, offset: int) -> Path:
    """A class-per-folder tree of 8x8 PNG digits (different images per offset)."""
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    for cls in range(10):
        (root / str(cls)).mkdir(parents=True)
        picked = np.flatnonzero(digits.target == cls)[offset : offset + 40]
        for i in picked:
            pixels = np.round(digits.images[i] * (255 / 16)).astype(np.uint8)
            Image.fromarray(pixels).save(root / str(cls) / f"{i}.png")
    return root


def test_bad_data_stops_the_pipeline_before_training(project: Path) -> None:
    # Class proportions of digits are ~10% each; demanding >= 50% must fail validation.
    shrink_params(project, {"validate": {"class_proportion": {"min": 0.5, "max": 0.9}}})
    result = dvc(project, "repro")
    assert result.returncode != 0
    assert ran(result.stdout) - {"check_params"} == {"download", "prepare", "validate"}
    assert "class" in (result.stdout + result.stderr).lower()
    assert not (project / "data/models/vae/model.pt").exists()


def test_editing_an_imported_module_makes_its_stages_stale(project: Path) -> None:
    repro(project, "prepare")
    commit(project, "prepared")
    module = project / "src/genpipe/data/stats.py"
    module.write_text(module.read_text() + "\n# edited\n")
    status = dvc(project, "status", "--json")
    assert status.returncode == 0, status.stderr
    assert {"prepare", "validate"} <= set(json.loads(status.stdout))
    assert "download" not in json.loads(status.stdout)
