"""Pipeline wall times on the digits default, side by side in one run.

    python -m benchmarks.pipeline [--flow]

1. a cold `dvc repro` in a fresh copy of the project (goal <= 3 min on 2 cores);
2. a no-op `dvc repro` (goal <= 2 s);
3. an incremental run after changing gan.lr: asserts only train_gan, evaluate and register rerun;
4. with --flow: the Prefect flow's no-op run against the plain DVC no-op.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
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


def stages_run(stdout: str) -> set[str]:
    return {ln.split("'")[1] for ln in stdout.splitlines() if ln.startswith("Running stage '")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--flow", action="store_true", help="also time the Prefect flow no-op")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        project = copy_project(Path(tmp) / "project")
        env = {
            **os.environ,
            "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
            "MLFLOW_TRACKING_URI": f"sqlite:///{tmp}/mlflow.db",
            "GENPIPE_ARTIFACT_ROOT": f"{tmp}/artifacts",
            "PREFECT_HOME": f"{tmp}/prefect",
        }
        dvc = [str(BIN / "dvc"), "repro"]
        cold, out = timed(dvc, project, env)
        print(
            f"cold dvc repro:        {cold:7.1f} s   stages run: {len(stages_run(out))}   (goal <= 180 s)"
        )
        noop = min(timed(dvc, project, env)[0] for _ in range(3))
        print(f"no-op dvc repro:       {noop:7.2f} s   (best of 3; goal <= 2 s)")

        params_path = project / "params.yaml"
        params = yaml.safe_load(params_path.read_text())
        params["gan"]["lr"]["generator"] *= 1.5
        params_path.write_text(yaml.safe_dump(params, sort_keys=False))
        incr, out = timed(dvc, project, env)
        rerun = stages_run(out)
        assert rerun == {"train_gan", "evaluate", "register"}, f"unexpected reruns: {sorted(rerun)}"
        print(
            f"after gan.lr change:   {incr:7.1f} s   reran: {', '.join(sorted(rerun))}  ({incr / cold:.2f}x cold)"
        )

        if args.flow:
            flow = [str(BIN / "python"), "-m", "pipelines.genpipe_flow"]
            flow_noop, _ = timed(flow, project, env)
            print(
                f"Prefect flow no-op:    {flow_noop:7.2f} s   ({flow_noop / noop:.1f}x the dvc no-op)"
            )


if __name__ == "__main__":
    main()
