"""Pipeline wall times on the digits default, side by side in one run.

    python -m benchmarks.pipeline [--flow] [--tiny] [--no-incremental]

1. a cold `dvc repro` in a fresh copy of the project (goal <= 3 min on 2 cores), then the run
   that snapshots the champions it registered;
2. a no-op `dvc repro` (goal <= 3 s): the always-run `champions` stage reads the registry through
   MlflowClient; beside it DVC's own check of the same graph (`dvc status`) and the champions
   stage's process alone;
3. an incremental run after changing gan.lr: asserts only the GAN branch (train_gan, evaluate,
   score_champions, decide; register if the decision changed) and the snapshot rerun
   (skipped with --no-incremental);
4. with --flow, the Prefect flow's no-op against a running `prefect server` (started here in its
   own process group; `python -m pipelines`, a fresh process each time, so imports count), next
   to an empty Prefect flow against the same server and the DVC no-op: goal <= empty flow + DVC
   no-op + 1.0 s; and what the flow's process pays for imports (prefect and dvc.repo load in it,
   mlflow only in stage processes).

--tiny shrinks training and evaluation (tests/pipelines/conftest.TINY_REAL_PARAMS): the no-op
figures do not depend on it, the cold and incremental ones do.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import yaml

from tests.conftest import copy_project

BIN = Path(sys.executable).parent


def timed(cmd: list[str], cwd: Path, env: dict) -> tuple[float, str]:
    start = time.perf_counter()
    out = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if out.returncode != 0:
        sys.exit(
            f"{' '.join(cmd)} failed ({out.returncode}):\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
        )
    return elapsed, out.stdout


def best(n: int, run: Callable[[], float]) -> float:
    return min(run() for _ in range(n))


def stages_run(stdout: str) -> set[str]:
    return {ln.split("'")[1] for ln in stdout.splitlines() if ln.startswith("Running stage '")}


def import_seconds(module: str, env: dict) -> float:
    """Wall time of `python -c 'import module'` minus a bare interpreter start (best of 2)."""
    bare = best(2, lambda: timed([sys.executable, "-c", "pass"], Path.cwd(), env)[0])
    return (
        best(2, lambda: timed([sys.executable, "-c", f"import {module}"], Path.cwd(), env)[0])
        - bare
    )


EMPTY_FLOW = """
from prefect import flow


@flow(name="empty")
def empty() -> None:
    pass


empty()
"""


def flow_run(flow: list[str], project: Path, env: dict) -> tuple[float, float]:
    """(wall time of the fresh process, seconds of the flow call it printed)."""
    wall, out = timed(flow, project, env)
    match = re.search(r"^pipeline run \S+ \(([\d.]+) s\)", out, flags=re.M)
    if not match:
        sys.exit(f"no 'pipeline run ... (N s)' line in the flow's output:\n{out[-2000:]}")
    return wall, float(match.group(1))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_prefect_server(env: dict, log: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    with open(log, "wb") as fh:
        proc = subprocess.Popen(
            [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stopped as a whole below
        )
    api = f"http://127.0.0.1:{port}/api"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"prefect server exited ({proc.returncode}):\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{api}/health", timeout=2):
                return proc, api
        except OSError:
            time.sleep(0.5)
    stop_group(proc)
    sys.exit(f"prefect server not healthy after 180 s:\n{log.read_text()[-3000:]}")


def stop_group(proc: subprocess.Popen, grace: float = 20.0) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            continue


def flow_noops(project: Path, env: dict, tmp: str) -> None:
    flow = [str(BIN / "python"), "-m", "pipelines"]
    no_api = {k: v for k, v in env.items() if k != "PREFECT_API_URL"}
    empty = [sys.executable, "-c", EMPTY_FLOW]
    server, api = start_prefect_server(no_api, Path(tmp) / "prefect-server.log")
    try:
        with_api = {**no_api, "PREFECT_API_URL": api}
        timed(flow, project, with_api)  # warm-up: the flow's first records on this server
        timed(empty, project, with_api)
        running, empties, dvcs = [], [], []
        for _ in range(3):  # alternating, so a load change hits all three alike
            running.append(flow_run(flow, project, with_api))
            empties.append(timed(empty, project, with_api)[0])
            dvcs.append(timed([str(BIN / "dvc"), "repro"], project, env)[0])
    finally:
        stop_group(server)
    imports = {m: import_seconds(m, no_api) for m in ("prefect", "dvc.repo", "mlflow")}
    run_wall, run_call = min(w for w, _ in running), min(c for _, c in running)
    run_empty, noop = min(empties), min(dvcs)
    goal = run_empty + noop + 1.0
    print(f"no-op dvc repro:                 {noop:7.2f} s   (best of 3, alternating)")
    print(f"an empty Prefect flow:           {run_empty:7.2f} s   (`python -c`, best of 3)")
    print(
        f"flow no-op, running API:         {run_wall:7.2f} s   `python -m pipelines`, best of 3; "
        f"goal <= empty flow + dvc no-op + 1.0 = {goal:.2f} s: "
        f"{'met' if run_wall <= goal else 'MISSED'} ({run_wall - goal:+.2f} s); the flow call "
        f"{run_call:.2f} s; no helper process"
    )
    print(
        "imports (fresh interpreter):     "
        + ", ".join(f"{m} {s:.2f} s" for m, s in imports.items())
        + "   (the flow's process imports prefect and dvc.repo; mlflow only stage processes)"
    )
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--flow", action="store_true", help="also time the Prefect flow no-ops")
    ap.add_argument("--tiny", action="store_true", help="tiny training/evaluation params")
    ap.add_argument("--no-incremental", action="store_true", help="skip the gan.lr rerun")
    ap.add_argument(
        "--project",
        type=Path,
        default=None,
        help="an already reproduced copy to time the no-ops in (no cold run; stores stay in tmp)",
    )
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        project = args.project.resolve() if args.project else copy_project(Path(tmp) / "project")
        env = {
            **os.environ,
            "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
            "MLFLOW_TRACKING_URI": f"sqlite:///{tmp}/mlflow.db",
            "GENPIPE_ARTIFACT_ROOT": f"{tmp}/artifacts",
            "PREFECT_HOME": f"{tmp}/prefect",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            # the temporary API's first start migrates its database: slow on a busy machine
            "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
        }
        if args.tiny and not args.project:
            from genpipe.overrides import apply_overrides
            from tests.pipelines.conftest import TINY_REAL_PARAMS

            apply_overrides(project / "params.yaml", TINY_REAL_PARAMS)
        dvc = [str(BIN / "dvc"), "repro"]
        cold, out = timed(dvc, project, env)
        print(
            f"{'cold' if not args.project else 'first'} dvc repro:        {cold:7.1f} s   "
            f"stages run: {len(stages_run(out))}   (goal <= 180 s{', tiny params' if args.tiny else ''})"
        )
        _, out = timed(dvc, project, env)  # the champions the cold run registered: a snapshot
        print(f"after the promotion:            reran {', '.join(sorted(stages_run(out)))}")
        noop = best(3, lambda: timed(dvc, project, env)[0])
        _, out = timed(dvc, project, env)
        assert stages_run(out) == {"champions"}, f"a no-op ran {sorted(stages_run(out))}"
        status = best(3, lambda: timed([str(BIN / "dvc"), "status"], project, env)[0])
        snapshot = [sys.executable, "-m", "genpipe.stages.champions", "--out", f"{tmp}/c.json",
                    "--work", f"{tmp}/work"]  # fmt: skip
        alone = best(3, lambda: timed(snapshot, project, env)[0])
        print(
            f"no-op dvc repro:       {noop:7.2f} s   (best of 3; goal <= 3 s: "
            f"{'met' if noop <= 3 else 'MISSED'}); only `champions` ran"
        )
        print(
            f"  DVC's own check:     {status:7.2f} s   `dvc status` of the same graph, best of 3 "
            f"(the no-op is {noop / status:.1f}x)"
        )
        print(f"  champions alone:     {alone:7.2f} s   its process: MlflowClient import + reads")

        if not args.no_incremental:
            params_path = project / "params.yaml"
            params = yaml.safe_load(params_path.read_text())
            params["gan"]["lr"]["generator"] *= 1.5
            params_path.write_text(yaml.safe_dump(params, sort_keys=False))
            incr, out = timed(dvc, project, env)
            rerun = stages_run(out)
            branch = {"champions", "train_gan", "evaluate", "score_champions", "decide"}
            assert branch <= rerun <= branch | {"register"}, f"unexpected reruns: {sorted(rerun)}"
            print(
                f"after gan.lr change:   {incr:7.1f} s   reran: {', '.join(sorted(rerun))}  ({incr / cold:.2f}x cold)"
            )

        if args.flow:
            flow_noops(project, env, tmp)


if __name__ == "__main__":
    main()
