"""Register against a real `mlflow server` over HTTP: the stage, the lock race, server down."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from mlflow import MlflowClient

from genpipe.stages import register
from tests.registry.conftest import free_port


def params_file(folder: Path, prefix: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "params.yaml"
    path.write_text(f"data: {{dataset: digits}}\nregister: {{model_name_prefix: {prefix}}}\n")
    return path


def stage_argv(params: Path, report: Path, models: dict[str, Path], out: Path) -> list[str]:
    return [
        "--params", str(params), "--report", str(report), "--out", str(out),
        "--vae", str(models["vae"]), "--gan", str(models["gan"]),
    ]  # fmt: skip


@pytest.mark.slow
def test_register_over_http(
    mlflow_server: str,
    tmp_path: Path,
    tiny_models: dict[str, Path],
    write_report: Callable[..., Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    prefix = f"http{uuid.uuid4().hex[:6]}"
    report = write_report(fd={"vae": 9.0, "gan": 12.0}, psnr={"vae": 17.0, "gan": 21.0})
    argv = stage_argv(params_file(tmp_path, prefix), report, tiny_models, tmp_path / "out")
    assert register.main(argv) == 0
    record = json.loads((tmp_path / "out" / "decision.json").read_text())
    assert record["tasks"]["generation"]["winner"]["family"] == "vae"
    assert record["tasks"]["restoration"]["winner"]["family"] == "gan"

    mlflow.set_tracking_uri(mlflow_server)
    client = MlflowClient()
    gen = client.get_registered_model(f"{prefix}-digits-generation")
    assert str(gen.aliases["champion"]) == "1"
    assert client.get_model_version(gen.name, "1").tags["genpipe.family"] == "vae"
    model = mlflow.pyfunc.load_model(
        f"models:/{gen.name}@champion"
    )  # artifacts proxied by the server
    assert len(model.predict(pd.DataFrame({"n": [5], "seed": [3]}))) == 5


RACER = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path
    import mlflow
    from genpipe.registry import mlflow_registry as reg

    name, version, barrier, locked = sys.argv[1], sys.argv[2], Path(sys.argv[3]), sys.argv[4] == "1"
    read = reg.champion_candidate
    def slow_read(n):  # widen the read-compare-write window so the two runs surely overlap
        found = read(n)
        time.sleep(1.5)
        return found
    reg.champion_candidate = slow_read
    if not locked:
        import contextlib
        reg.model_lock = lambda n, **kw: contextlib.nullcontext("nobody")
    mlflow.MlflowClient().get_registered_model(name)  # connection warmed up
    (barrier / f"ready-{version}").touch()
    while not (barrier / "go").exists():
        time.sleep(0.01)
    outcome = reg.promote_if_better(name, version, "psnr", "overlapping_ci_keeps_champion")
    print(json.dumps(outcome.to_dict()))
    """
)


def race(server: str, tmp_path: Path, locked: bool) -> tuple[str, list[dict]]:
    """Two processes promote v1 (PSNR 20) and v2 (PSNR 25) of one model at the same instant."""
    mlflow.set_tracking_uri(server)
    client = MlflowClient()
    name = f"race-{uuid.uuid4().hex[:8]}"
    client.create_registered_model(name)
    run_id = client.create_run("0").info.run_id  # versions only need a source, not a real model
    for value in (20.0, 25.0):
        tags = {
            "genpipe.family": "vae", "genpipe.metric_value": str(value),
            "genpipe.metric_ci": json.dumps([value - 0.5, value + 0.5]),
            "genpipe.protocol_hash": "p",
        }  # fmt: skip
        client.create_model_version(name, source=f"runs:/{run_id}/model", run_id=run_id, tags=tags)
    barrier = tmp_path / f"barrier-{locked}"
    barrier.mkdir()
    env = os.environ | {"MLFLOW_TRACKING_URI": server}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", RACER, name, v, str(barrier), "1" if locked else "0"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for v in ("1", "2")
    ]
    deadline = time.monotonic() + 120
    while len(list(barrier.glob("ready-*"))) < 2:
        assert time.monotonic() < deadline and all(p.poll() is None for p in procs), [
            p.communicate() for p in procs
        ]
        time.sleep(0.05)
    (barrier / "go").touch()
    outs = [p.communicate(timeout=120) for p in procs]
    if locked:
        assert all(p.returncode == 0 for p in procs), [err[-2000:] for _, err in outs]
    return name, [
        json.loads(out.strip().splitlines()[-1]) if p.returncode == 0 else {"failed": err[-2000:]}
        for p, (out, err) in zip(procs, outs, strict=True)
    ]


def test_two_processes_racing_leave_one_champion_the_better_one(
    mlflow_server: str, tmp_path: Path
) -> None:
    name, outcomes = race(mlflow_server, tmp_path, locked=True)
    client = MlflowClient()
    model = client.get_registered_model(name)
    assert str(model.aliases["champion"]) == "2"  # whatever the order, the better version wins
    claims = [o for o in outcomes if o["reason"] == "no champion existed"]
    assert len(claims) == 1, outcomes  # the second run saw the first one's champion
    history = json.loads(model.tags["genpipe.champion_history"])
    assert history in (["1", "2"], ["2"])
    assert history[0] == claims[0]["version"]
    assert not any(m.name == f"{name}.lock" for m in client.search_registered_models())


@pytest.mark.slow
def test_race_without_the_lock_does_lose_updates(mlflow_server: str, tmp_path: Path) -> None:
    """Control: the set-up really overlaps. Without the lock the two runs collide: either both
    claim the empty champion slot (a lost update), or one dies on the store's write conflict."""
    _, outcomes = race(mlflow_server, tmp_path, locked=False)
    both_claimed = [o.get("reason") for o in outcomes] == ["no champion existed"] * 2
    conflict = any("IntegrityError" in o.get("failed", "") for o in outcomes)
    assert both_claimed or conflict, outcomes


def test_server_down_error_names_the_uri_and_writes_nothing(
    tmp_path: Path,
    tiny_models: dict[str, Path],
    write_report: Callable[..., Path],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    uri = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    report = write_report(fd={"vae": 9.0, "gan": 12.0}, psnr={"vae": 17.0, "gan": 21.0})
    argv = stage_argv(params_file(tmp_path, "down"), report, tiny_models, tmp_path / "out")
    assert register.main(argv) == 2
    err = capsys.readouterr().err
    assert uri in err and "unreachable" in err
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_two_register_stages_racing_leave_one_champion_per_task(
    mlflow_server: str,
    tmp_path: Path,
    tiny_models: dict[str, Path],
    write_report: Callable[..., Path],
) -> None:
    """The whole stage twice at once (different numbers): one champion per task, the better one."""
    prefix = f"stage{uuid.uuid4().hex[:6]}"
    params = params_file(tmp_path, prefix)
    reports = [
        write_report(fd={"vae": 12.0, "gan": 8.0}, psnr={"vae": 20.0, "gan": 18.0}),
        write_report(fd={"vae": 6.0, "gan": 9.0}, psnr={"vae": 19.0, "gan": 24.0}),
    ]
    env = os.environ | {"MLFLOW_TRACKING_URI": mlflow_server}
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "genpipe.stages.register",
                *stage_argv(params, report, tiny_models, tmp_path / f"out{i}"),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        for i, report in enumerate(reports)
    ]
    logs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [log[-2000:] for log in logs]

    mlflow.set_tracking_uri(mlflow_server)
    client = MlflowClient()
    records = [json.loads((tmp_path / f"out{i}" / "decision.json").read_text()) for i in range(2)]
    for task, best in (("generation", 6.0), ("restoration", 24.0)):
        model = client.get_registered_model(f"{prefix}-digits-{task}")
        champion = client.get_model_version(model.name, str(model.aliases["champion"]))
        assert float(champion.tags["genpipe.metric_value"]) == best
        claims = [
            r for r in records if r["tasks"][task]["registry"]["reason"] == "no champion existed"
        ]
        assert len(claims) == 1
        assert len(client.search_model_versions(f"name = '{model.name}'")) == 2
