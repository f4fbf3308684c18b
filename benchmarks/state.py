"""What DVC's state saves: the cold pipeline against a revert, a no-op and a wiped MLflow store.

In a throwaway copy of the project (its own git repo, MLflow store and DVC cache), on the
shipped params.yaml (digits) unless --tiny:
  1. cold `dvc repro` (every stage runs);
  2. no-op `dvc repro` (only the registry check runs);
  3. `gan.lr` changed, `dvc repro` (the GAN branch, score_champions and decide rerun);
  4. reverted, `dvc repro`: every output comes back from the run-cache, nothing trains;
  5. the MLflow store deleted, `dvc repro`: the snapshot shows another store, register refills it.
It prints each time, the stages that ran, and the revert's time as a share of the cold run's.

    python -m benchmarks.state [--tiny]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from tests.conftest import copy_project
from tests.e2e.tiny import shrink_params

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent


def dvc_repro(project: Path) -> tuple[float, set[str]]:
    env = {**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}"}
    for key in ("MLFLOW_TRACKING_URI", "GENPIPE_ARTIFACT_ROOT"):
        env.pop(key, None)  # the copy's own store: mlflow/mlflow.db
    start = time.perf_counter()
    done = subprocess.run(
        [str(VENV_BIN / "dvc"), "repro"], cwd=project, env=env, capture_output=True, text=True
    )
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"dvc repro failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
    ran = {
        line.split("'")[1] for line in done.stdout.splitlines() if line.startswith("Running stage")
    }
    return seconds, ran


def set_generator_lr(project: Path, value: float) -> None:
    path = project / "params.yaml"
    params = yaml.safe_load(path.read_text())
    params["gan"]["lr"]["generator"] = value
    path.write_text(yaml.safe_dump(params, sort_keys=False))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tiny", action="store_true", help="the tests' shrunken params (seconds)")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        project = copy_project(Path(tmp) / "project")
        if args.tiny:
            shrink_params(project)
        (project / "dvc.lock").unlink(missing_ok=True)
        subprocess.run(["git", "add", "-A"], cwd=project, check=True)
        subprocess.run(
            ["git", "-c", "user.email=b@b", "-c", "user.name=b", "commit", "-qm", "params"],
            cwd=project,
            check=True,
        )
        original = yaml.safe_load((project / "params.yaml").read_text())["gan"]["lr"]["generator"]
        rows = [("cold dvc repro", *dvc_repro(project))]
        rows.append(("no-op dvc repro", *dvc_repro(project)))
        set_generator_lr(project, original * 3)
        rows.append(("gan.lr changed", *dvc_repro(project)))
        subprocess.run(["git", "checkout", "params.yaml"], cwd=project, check=True)
        rows.append(("gan.lr reverted", *dvc_repro(project)))
        for path in (project / "mlflow").iterdir():
            if path.name != "README.md":
                shutil.rmtree(path) if path.is_dir() else path.unlink()
        rows.append(("MLflow store deleted", *dvc_repro(project)))
    cold = rows[0][1]
    print(f"{'run':22} {'seconds':>8} {'vs cold':>8}  stages that ran")
    for name, seconds, ran in rows:
        print(f"{name:22} {seconds:8.1f} {seconds / cold:8.3f}  {', '.join(sorted(ran)) or '-'}")
    print(f"load average now: {os.getloadavg()[0]:.1f} (2-core machine, shared)")


if __name__ == "__main__":
    main()
