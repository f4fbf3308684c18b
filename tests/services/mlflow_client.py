"""A client process for the services tests: logs runs to the MLflow server in the environment.

    python mlflow_client.py write EXPERIMENT WRITER RUNS STEPS   # runs, metrics, one artifact each
    python mlflow_client.py phased EXPERIMENT MARKER_DIR STEPS   # STEPS, wait for MARKER_DIR/go, STEPS
    python mlflow_client.py check                                # genpipe's pre-flight check only

It goes through genpipe.tracking (the pre-flight check, the race-safe experiment creation), as a
stage does, and through MLflow's own HTTP client with the MLFLOW_HTTP_REQUEST_* retry settings.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

METRICS = ("loss", "accuracy", "lr")


def write(experiment: str, writer: str, runs: int, steps: int) -> None:
    import mlflow

    from genpipe.tracking import configure_mlflow, experiment_id

    configure_mlflow()
    exp = experiment_id(experiment)
    for r in range(runs):
        with mlflow.start_run(experiment_id=exp, run_name=f"w{writer}-r{r}"):
            mlflow.log_params({"writer": writer, "run": r})
            for step in range(steps):
                for i, name in enumerate(METRICS):
                    mlflow.log_metric(name, step * 10 + i, step=step)
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / "note.txt"
                path.write_text(f"writer {writer} run {r}")
                mlflow.log_artifact(str(path))


def phased(experiment: str, markers: Path, steps: int) -> None:
    import mlflow

    from genpipe.tracking import configure_mlflow, experiment_id

    configure_mlflow()
    with mlflow.start_run(experiment_id=experiment_id(experiment)) as run:
        print(run.info.run_id, flush=True)
        for step in range(steps):
            mlflow.log_metric("loss", step, step=step)
        (markers / "phase1").touch()
        deadline = time.monotonic() + 600
        while not (markers / "go").exists():
            if time.monotonic() > deadline:
                raise SystemExit("no go marker within 600 s")
            time.sleep(0.2)
        (markers / "calling").touch()
        for step in range(steps, 2 * steps):
            mlflow.log_metric("loss", step, step=step)


def check() -> None:
    from genpipe.tracking import configure_mlflow

    configure_mlflow()


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    if command == "write":
        write(args[0], args[1], int(args[2]), int(args[3]))
    elif command == "phased":
        phased(args[0], Path(args[1]), int(args[2]))
    else:
        check()
