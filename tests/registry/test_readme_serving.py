"""The README's serving commands, run as written on a project copy, and the bad requests.

The commands are parsed from README.md (so the test fails when the README drifts); only the ports
are swapped for free ones. The champions live where a fresh clone keeps them, in the copy's
mlflow/mlflow.db, and the commands run without MLFLOW_TRACKING_URI in the environment.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import mlflow
import pytest

from tests import markdown_blocks
from tests.conftest import REPO, link_venv
from tests.registry.conftest import free_port, stop_group, wait_http
from tests.registry.test_register_local import run_stage

pytestmark = pytest.mark.slow

README_PORTS = {"restoration": 5001, "generation": 5002}


def readme_commands() -> list[str]:
    """Every command of the README's command blocks, continuation lines joined, comments cut."""
    blocks = markdown_blocks.command_blocks(REPO / "README.md")
    return [c for block in blocks for c in markdown_blocks.commands(block.text)]


def pick(commands: list[str], pattern: str) -> list[str]:
    found = [c for c in commands if re.search(pattern, c)]
    assert found, f"README.md has no command matching {pattern!r}"
    return found


def on_port(command: str, ports: dict[str, int]) -> str:
    """The README command with its ports (5001, 5002) swapped for the test's free ones."""
    for task, readme_port in README_PORTS.items():
        command = command.replace(f"127.0.0.1:{readme_port}", f"127.0.0.1:{ports[task]}")
        command = re.sub(rf"(--port |SERVE_PORT=){readme_port}\b", rf"\g<1>{ports[task]}", command)
    if command.startswith("make serve") and "SERVE_PORT=" not in command:
        task = re.search(r"TASK=(\w+)", command).group(1)  # type: ignore[union-attr]
        command += f" SERVE_PORT={ports[task]}"
    return command


@pytest.fixture
def project_with_champions(
    project_copy: Path,
    tiny_models: dict[str, Path],
    write_report: Callable[..., Path],
    migrated_mlflow_db: Path,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> Path:
    """A fresh-clone-like project: the test's venv as .venv, champions in mlflow/mlflow.db."""
    # the copied params.yaml is the repo's: digits, registry prefix genpipe
    link_venv(project_copy)
    store = project_copy / "mlflow" / "mlflow.db"
    shutil.copy(migrated_mlflow_db, store)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{store}")
    mlflow.set_tracking_uri(f"sqlite:///{store}")
    run_stage(
        write_report(fd={"vae": 12.0, "gan": 8.0}, psnr={"vae": 20.0, "gan": 18.0}),
        tmp_path / "register",
    )
    return project_copy


def shell_env() -> dict[str, str]:
    """A user's shell: no MLFLOW_TRACKING_URI, the venv not on PATH."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "GENPIPE_"))}
    bin_dir = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join(p for p in env["PATH"].split(os.pathsep) if p != bin_dir)
    return env


def start(command: str, cwd: Path, log: Path) -> subprocess.Popen:
    with open(log, "wb") as fh:
        return subprocess.Popen(
            ["bash", "-c", command],
            cwd=cwd,
            env=shell_env(),
            stdout=fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def curl(command: str, cwd: Path) -> tuple[int, dict]:
    """Run a README curl command; returns (HTTP status, JSON body)."""
    done = subprocess.run(
        ["bash", "-c", f"{command} -w '\\n%{{http_code}}'"],
        cwd=cwd,
        env=shell_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    body, status = done.stdout.rsplit("\n", 1)
    return int(status), json.loads(body)


def post(port: int, records: list[dict]) -> tuple[int, dict]:
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/invocations",
        json.dumps({"dataframe_records": records}).encode(),
        {"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=120) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def wait_served(port: int, proc: subprocess.Popen, log: Path) -> None:
    try:
        wait_http(f"http://127.0.0.1:{port}/ping", timeout=300, proc=proc)
    except Exception as exc:
        raise AssertionError(f"{exc}\n{log.read_text()[-3000:]}") from None


def check_readme_curls(commands: list[str], project: Path, ports: dict[str, int]) -> None:
    for command in pick(commands, r"^curl .*127\.0\.0\.1:5002"):
        status, body = curl(on_port(command, ports), project)
        if '"n": 2.5' in command:
            assert status == 400 and body["error_code"] == "INVALID_PARAMETER_VALUE", body
            assert "row 0: n must be a whole number in 1..4096, got 2.5" in body["message"]
        else:
            assert status == 200, body
            assert [r["index"] for r in body["predictions"]] == [0, 1, 2, 3]
            assert all(len(r["image"]) == 64 for r in body["predictions"])
    for command in pick(commands, r"^curl .*127\.0\.0\.1:5001"):
        status, body = curl(on_port(command, ports), project)
        assert status == 200, body
        [row] = body["predictions"]
        assert len(row["restored"]) == 64 and 0 <= min(row["restored"]) <= max(row["restored"]) <= 1


BAD_GENERATION = [
    ({"n": 2.5, "seed": 0}, "row 0: n must be a whole number in 1..4096, got 2.5"),
    ({"n": 0, "seed": 0}, "row 0: n must be a whole number in 1..4096, got 0"),
    ({"n": 5000, "seed": 0}, "row 0: n must be a whole number in 1..4096, got 5000"),
    ({"n": 2, "seed": -1}, "row 0: seed must be a whole number in 0..9223372036854775807, got -1"),
    ({"n": 4}, 'the request has no "seed"; send e.g. {"dataframe_records": [{"n": 4, "seed": 0}]}'),
]
IMAGE = [0.5] * 64
BAD_RESTORATION = [
    ({"image": IMAGE[:63], "mask": None}, "row 0: image has 63 values; this model expects 64"),
    ({"image": [5.0, *IMAGE[1:]], "mask": None}, "image values must lie in [0, 1]"),
    ({"image": IMAGE, "mask": [1] * 10}, "row 0: mask has 10 values; this model expects 64"),
    ({"image": IMAGE, "mask": [0.5] * 64}, "row 0: mask values must be 0 or 1"),
]


def check_bad_requests(ports: dict[str, int]) -> None:
    for task, cases in (("generation", BAD_GENERATION), ("restoration", BAD_RESTORATION)):
        for record, reason in cases:
            status, body = post(ports[task], [record])
            assert status == 400, (record, body)
            assert body["error_code"] == "INVALID_PARAMETER_VALUE", (record, body)
            assert body["message"].startswith(("row ", "the request")), body[
                "message"
            ]  # reason first
            assert reason in body["message"], (record, body["message"])
            assert "unexpected error" not in body["message"]
    # a good row next to a bad one: the bad row is named, nothing is returned half-way
    status, body = post(ports["generation"], [{"n": 1, "seed": 0}, {"n": 1.5, "seed": 0}])
    assert status == 400 and "row 1: n must be a whole number" in body["message"]


def test_readme_serve_commands_and_curls_work_verbatim(project_with_champions: Path) -> None:
    project = project_with_champions
    readme = readme_commands()
    ports = {"restoration": free_port(), "generation": free_port()}
    make_serves = pick(readme, r"^make serve TASK=")
    assert {re.search(r"TASK=(\w+)", c).group(1) for c in make_serves} == set(ports)  # type: ignore[union-attr]
    for command in make_serves:
        dry = subprocess.run(
            ["bash", "-c", f"{command} -n"], cwd=project, capture_output=True, text=True
        )
        assert "pip install" not in dry.stdout, "make would reinstall into the shared venv"

    servers: dict[str, subprocess.Popen] = {}
    try:
        for command in make_serves:
            task = re.search(r"TASK=(\w+)", command).group(1)  # type: ignore[union-attr]
            servers[task] = start(on_port(command, ports), project, project / f"{task}.log")
        for task, proc in servers.items():
            wait_served(ports[task], proc, project / f"{task}.log")
        check_readme_curls(readme, project, ports)
        check_bad_requests(ports)

        # the by-hand form of the README, on a new port (the old server may still answer /ping
        # while it shuts down)
        stop_group(servers.pop("restoration"))
        ports["restoration"] = free_port()
        [by_hand] = pick(readme, r"mlflow models serve")
        servers["by-hand"] = start(on_port(by_hand, ports), project, project / "by-hand.log")
        wait_served(ports["restoration"], servers["by-hand"], project / "by-hand.log")
        for command in pick(readme, r"^curl .*127\.0\.0\.1:5001"):
            assert curl(on_port(command, ports), project)[0] == 200
    finally:
        for proc in servers.values():
            stop_group(proc)
    assert not (project / "mlflow.db").exists(), "a command created a stray ./mlflow.db"


def test_serve_without_a_champion_says_what_to_run(project_copy: Path, tmp_path: Path) -> None:
    """No store yet (a fresh clone): a clear error naming the model and the store, no server."""
    env = {**shell_env(), "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'empty' / 'mlflow.db'}"}
    done = subprocess.run(
        [str(Path(sys.executable).parent / "genpipe"), "serve", "restoration"],
        cwd=project_copy,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert "no champion for 'genpipe-digits-restoration'" in done.stderr
    assert "run the pipeline (make pipeline) first" in done.stderr
    assert not (project_copy / "mlflow.db").exists()
