"""MLflow logging throughput with concurrent writers: local SQLite vs the team's PostgreSQL server.

    .venv/bin/python -m benchmarks.services [--writers 3] [--runs 4] [--steps 50]

Each writer process logs `runs` runs, each with 10 params, `steps` single log_metric calls, one
log_batch of 50 metrics and one small artifact: the calls a training stage makes. All writers
wait at a barrier until every one has imported MLflow, then start together; the time is from the
barrier to the last writer's end. Three stores, measured back to back in one run:

- sqlite:          the local default, a SQLite file opened by every writer (no server);
- server+sqlite:   `mlflow server` on that SQLite file (the transport's cost, same database);
- server+postgres: `mlflow server` on PostgreSQL, as `make services-up` runs it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def writer(uri: str, experiment_id: str, runs: int, steps: int, barrier: Path) -> None:
    """One writer process: wait for the barrier, log, print (start, end) as JSON."""
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=uri)
    client.search_experiments(max_results=1)  # connect before the barrier
    (barrier.parent / f"ready-{os.getpid()}").touch()
    while not barrier.exists():
        time.sleep(0.01)
    start = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        note = Path(tmp) / "note.txt"
        note.write_text("x" * 1000)
        for r in range(runs):
            run = client.create_run(experiment_id, run_name=f"r{r}")
            rid = run.info.run_id
            client.log_batch(
                rid, params=[mlflow.entities.Param(f"p{i}", str(i)) for i in range(10)]
            )
            for step in range(steps):
                client.log_metric(rid, "loss", 1.0 / (step + 1), step=step)
            now = int(time.time() * 1000)
            metrics = [mlflow.entities.Metric(f"m{i}", float(i), now, 0) for i in range(50)]
            client.log_batch(rid, metrics=metrics)
            client.log_artifact(rid, str(note))
            client.set_terminated(rid)
    print(json.dumps({"start": start, "end": time.time()}))


def calls_per_writer(runs: int, steps: int) -> int:
    """HTTP calls (or store transactions) one writer makes: create, params, steps, batch,
    artifact, terminate."""
    return runs * (steps + 5)


def measure(uri: str, experiment_id: str, writers: int, runs: int, steps: int) -> float:
    """Seconds from the barrier until the last of `writers` concurrent writers finished."""
    barrier = Path(tempfile.mkdtemp()) / "go"
    argv = [sys.executable, "-m", "benchmarks.services", "--writer", uri, experiment_id]
    argv += [str(runs), str(steps), str(barrier)]
    procs = [
        subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(writers)
    ]
    # imports and the first connection happen before the clock starts
    while len(list(barrier.parent.glob("ready-*"))) < writers:
        if any(p.poll() is not None for p in procs):
            sys.exit(f"a writer died before the barrier on {uri}")
        time.sleep(0.1)
    barrier.touch()
    spans = []
    for proc in procs:
        out, err = proc.communicate(timeout=1800)
        if proc.returncode != 0:
            sys.exit(f"writer failed on {uri}:\n{err[-3000:]}")
        spans.append(json.loads(out.strip().splitlines()[-1]))
    shutil.rmtree(barrier.parent)
    return max(s["end"] for s in spans) - min(s["start"] for s in spans)


def new_experiment(uri: str, name: str, artifacts: Path | None) -> str:
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=uri)
    location = artifacts.as_uri() if artifacts else None
    return client.create_experiment(name, artifact_location=location)


def start_sqlite_server(folder: Path, db: Path, port: int) -> tuple[str, subprocess.Popen]:
    """`mlflow server` on the SQLite file, in its own process group (its uvicorn child too)."""
    from genpipe.services import servers
    from genpipe.services.supervisor import venv_bin

    argv = [
        str(venv_bin() / "mlflow"), "server",
        "--backend-store-uri", f"sqlite:///{db}",
        "--artifacts-destination", str(folder / "artifacts"), "--serve-artifacts",
        "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
    ]  # fmt: skip
    env = {
        **os.environ,
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        "PATH": f"{venv_bin()}{os.pathsep}{os.environ['PATH']}",
    }
    url = f"http://127.0.0.1:{port}"
    with open(folder / "server.log", "ab") as log:
        proc = subprocess.Popen(
            argv, env=env, cwd=folder, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    deadline = time.monotonic() + 300
    while (problem := servers.mlflow_probe(url, 10, None)) is not None:
        if time.monotonic() > deadline or proc.poll() is not None:
            sys.exit(f"mlflow server on SQLite did not start ({problem})")
        time.sleep(0.5)
    return url, proc


def stop_group(proc: subprocess.Popen) -> None:
    import signal

    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(timeout=60)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--writers", type=int, default=3)
    parser.add_argument("--runs", type=int, default=4)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--writer", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.writer:
        uri, exp, runs, steps, barrier = args.writer
        writer(uri, exp, int(runs), int(steps), Path(barrier))
        return

    import mlflow

    from genpipe.services import manager
    from genpipe.services.settings import Layout, load_services_config

    work = Path(tempfile.mkdtemp(prefix="gp-bench-"))
    work.chmod(0o711)  # the postgres account must reach its data dir inside
    state = work / "state"
    env = {
        "GENPIPE_SERVICES_STATE_DIR": str(state),
        "GENPIPE_SERVICES_POSTGRES_PORT": str(free_port()),
        "GENPIPE_SERVICES_MLFLOW_PORT": str(free_port()),
    }
    config = load_services_config(REPO / "params.yaml", env)
    layout = Layout(state)
    db = work / "mlflow.db"
    sqlite_uri = f"sqlite:///{db}"
    mlflow.MlflowClient(tracking_uri=sqlite_uri).search_experiments()  # migrate before timing
    results: dict[str, float] = {}
    sqlite_server = None
    try:
        exp = new_experiment(sqlite_uri, "direct", work / "artifacts")
        results["sqlite"] = measure(sqlite_uri, exp, args.writers, args.runs, args.steps)

        sqlite_server = start_sqlite_server(work, db, free_port())
        uri = sqlite_server[0]
        exp = new_experiment(uri, "served", None)
        results["server+sqlite"] = measure(uri, exp, args.writers, args.runs, args.steps)
        stop_group(sqlite_server[1])
        sqlite_server = None

        manager.up(config, layout, ["postgres", "mlflow"])
        client = manager.client_environment(config, layout)
        uri = client["MLFLOW_TRACKING_URI"]
        for key in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
            os.environ[key] = client[key]  # the writers log in as the team's account
        exp = new_experiment(uri, "postgres", None)
        results["server+postgres"] = measure(uri, exp, args.writers, args.runs, args.steps)
    finally:
        if sqlite_server is not None:
            stop_group(sqlite_server[1])
        manager.down(config, layout)
        shutil.rmtree(work, ignore_errors=True)

    calls = args.writers * calls_per_writer(args.runs, args.steps)
    base = results["sqlite"]
    print(
        f"\nload average at the end (1/5/15 min): {' '.join(f'{x:.1f}' for x in os.getloadavg())}"
    )
    print(
        f"{args.writers} concurrent writers x {args.runs} runs x ({args.steps} log_metric + "
        f"params, batch, artifact, create/terminate) = {calls} calls"
    )
    print(f"{'store':16} {'seconds':>8} {'calls/s':>8} {'vs sqlite':>10}")
    for name, seconds in results.items():
        print(f"{name:16} {seconds:8.1f} {calls / seconds:8.0f} {base / seconds:9.2f}x")


if __name__ == "__main__":
    main()
