"""A stand-in for every genpipe stage: same names, same files, shell-fast, no ML.

Copied into a project copy by tests/pipelines/conftest.py, so the flow's wiring (order, skips,
retries, timeouts, env, artifacts) is tested against real DVC without waiting for training.
Each call appends {stage, run_id, pid, cpu_share, start, end} to trace/<stage>.jsonl.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import yaml


def write(path: str, obj: object) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    text = obj if isinstance(obj, str) else json.dumps(obj)
    Path(path).write_text(text)


def main(stage: str) -> int:
    params = yaml.safe_load(Path("params.yaml").read_text())
    run_id = os.environ.get("GENPIPE_PIPELINE_RUN_ID", "")
    record = {
        "stage": stage,
        "run_id": run_id,
        "pid": os.getpid(),
        "cpu_share": os.environ.get("GENPIPE_CPU_SHARE"),
        "start": time.time(),
    }
    trace = Path("trace") / f"{stage}.jsonl"
    trace.parent.mkdir(exist_ok=True)
    with trace.open("a") as fh:  # written before any failure, so attempts are countable
        fh.write(json.dumps(record) + "\n")

    if Path(f"{stage}_hangs").exists():
        time.sleep(600)  # the hang a timeout must stop

    if stage == "download":
        failures = Path("download_failures")
        if failures.exists() and int(failures.read_text()) > 0:
            failures.write_text(str(int(failures.read_text()) - 1))
            print("mirror unreachable (simulated)", file=sys.stderr)
            return 1
        write("data/raw/images.txt", params["data"]["dataset"])
    elif stage == "prepare":
        write("data/prepared/meta.json", {"seed": params["data"]["seed"]})
    elif stage == "validate":
        ok = params["validate"]["min_rows"]["train"] <= 10_000
        write("data/validation/summary.json", {"success": ok})
        write("data/validation/docs/index.html", "<html></html>")
        if not ok:
            print(
                "expectation failed: train has fewer rows than validate.min_rows.train",
                file=sys.stderr,
            )
            return 2
    elif stage in ("train_vae", "train_gan", "train_evaluator"):
        name = stage.removeprefix("train_")
        write(f"data/models/{name}/model.txt", f"weights after {params[name]['epochs']} epochs")
        write(
            f"data/models/{name}/run.json",
            {
                "run_id": f"{name}-{run_id}",
                "experiment_id": "1",
                "experiment_name": "genpipe-digits",
            },
        )
    elif stage == "evaluate":
        write("data/eval/report.json", {"generation": {}})
    elif stage == "decide":
        write("data/register/decision.json", {"generation": {"champion": "gan"}})
        write("data/register/decision.md", "- generation: **gan** promoted to champion\n")
        headline = {"generation": {"winner": "gan", "fd": {"vae": 1.25, "gan": 0.75}}}
        write("data/metrics.json", {**headline, "evaluator_accuracy": 0.98})
    elif stage == "register":
        pass  # the real one reconciles the MLflow registry with the decision

    record["end"] = time.time()
    with trace.open("a") as fh:
        fh.write(json.dumps(record) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1]))
