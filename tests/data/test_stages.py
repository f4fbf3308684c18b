"""The stage CLIs as DVC runs them, as subprocesses: exit 0 on success, 2 + a message if bad."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import yaml

from genpipe.data.dataset import load_prepared
from tests.params import merge, raw_params


def stage(name: str, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", f"genpipe.stages.{name}", "--params", "params.yaml", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )


def write_params(folder: Path, data: dict) -> None:
    """The shipped params.yaml with these `data` keys."""
    (folder / "params.yaml").write_text(yaml.safe_dump(merge(raw_params(), {"data": data})))


def test_download_then_prepare_digits(tmp_path: Path) -> None:
    write_params(tmp_path, {"dataset": "digits", "max_images": 200, "seed": 3})
    down = stage("download", tmp_path, "--out", "data/raw")
    assert down.returncode == 0, down.stderr
    assert json.loads((tmp_path / "data/raw/source.json").read_text())["n_images"] == 200

    prep = stage("prepare", tmp_path, "--raw", "data/raw", "--out", "data/prepared")
    assert prep.returncode == 0, prep.stderr
    prepared = load_prepared(tmp_path / "data/prepared")
    assert prepared.meta["dataset"] == "digits" and sum(prepared.meta["counts"].values()) == 200
    assert (tmp_path / "data/prepared/stats.csv").read_text().count("\n") == 201


def test_unreachable_mirror_exits_2_and_leaves_nothing(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mirror = f"http://127.0.0.1:{port}/mnist/"
    download = {"mirrors": [mirror], "retries": 0}
    write_params(tmp_path, {"dataset": "mnist", "download": download})
    result = stage("download", tmp_path, "--out", "data/raw")
    assert result.returncode == 2
    assert "genpipe download: error: could not download t10k-images-idx3-ubyte.gz" in result.stderr
    assert f"{mirror}t10k-images-idx3-ubyte.gz: ConnectionError" in result.stderr
    assert "Connection refused" in result.stderr
    assert "Traceback" not in result.stderr
    assert list((tmp_path / "data/raw").iterdir()) == []


def test_bad_params_and_missing_raw_exit_2(tmp_path: Path) -> None:
    write_params(tmp_path, {"dataset": "digits", "max_imgs": 10})
    result = stage("download", tmp_path, "--out", "data/raw")
    assert result.returncode == 2
    assert "- data.max_imgs: unknown key (misspelt?)" in result.stderr
    assert not (tmp_path / "data").exists()

    write_params(tmp_path, {"dataset": "digits"})
    result = stage("prepare", tmp_path, "--raw", "nowhere", "--out", "data/prepared")
    assert result.returncode == 2
    assert "nowhere/images.npz: not found; run `dvc repro download` first" in result.stderr
    assert not (tmp_path / "data/prepared").exists()
