"""The digits pipeline on one host against the same run dispatched to two workers, side by side.

    .venv/bin/python -m benchmarks.multihost [--tiny] [--repeats 1]   (root: namespace hosts)

Hosts are network namespaces (tests/netns.py): `ctl` runs the team services and is the
controller; `worker-a` (pools genpipe-gpu and genpipe-cpu) and `worker-b` (genpipe-gpu) run
`python -m pipelines.worker`, as in tests/e2e/test_multihost.py. The stage placement is the
tests' (tests.e2e.multihost.TEST_POOLS): data stages, decide and register on the controller, the
three trainings and evaluate on workers. Each repeat runs, on fresh checkouts of the same commit
and params (the registered model prefix differs, so neither run scores the other's champion; the
seeds change per repeat, so no repeat restores the last one from the team's run-cache):
- single: `python -m pipelines` on ctl, every stage local (against the same servers);
- multi:  the same flow with dispatch on.
Every host is the same 2-core machine, so the multi-host run cannot be faster here: the
comparison measures what dispatch costs. The per-stage dispatch overhead of a dispatched stage
is its task's wall time minus its `dvc repro` on the worker: snapshot (push upstream outputs,
read dvc.lock), queue (until a worker takes it), the child's start (engine, clone) and setup,
pull, push, and the controller's accept. Its share of a digits run is the overhead on the
critical path (the chain of stages that finished last) over the single-host run's wall time.
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
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.e2e.multihost import PYTHON, Team, bring_up, start_team  # noqa: E402
from tests.netns import NetnsLab  # noqa: E402

WORKERS = {"worker-a": ["genpipe-gpu", "genpipe-cpu"], "worker-b": ["genpipe-gpu"]}
OVERHEAD_KEYS = ("snapshot", "queue", "child_start", "setup", "pull", "push", "accept")


def single_checkout(team: Team, name: str, seed: int) -> Path:
    """A fresh copy of the controller's checkout (same commit), registering under `name`."""
    dest = team.root / "ctl" / name
    subprocess.run(["git", "clone", "-q", str(team.project), str(dest)], check=True)
    shutil.copy(team.project / ".dvc" / "config.local", dest / ".dvc" / "config.local")
    path = dest / "params.yaml"
    params = yaml.safe_load(path.read_text())
    params["register"]["model_name_prefix"] = name
    params["train"]["seed"] = params["evaluator"]["seed"] = seed
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return dest


def run_single(team: Team, name: str, seed: int) -> float:
    project = single_checkout(team, name, seed)
    started = time.monotonic()
    done = team.ctl.run(
        [PYTHON, "-m", "pipelines"],
        env=team.ctl_env(),
        cwd=project,
        timeout=7200,
        check=False,
    )
    seconds = time.monotonic() - started
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return seconds


def run_multi(team: Team, name: str, seed: int) -> tuple[float, dict[str, Any]]:
    """The dispatched run, in the controller's checkout reset to a fresh state."""
    project = team.project
    for path in ("data", ".dvc/cache", "dvc.lock", ".genpipe"):
        target = project / path
        if target.is_dir():
            shutil.rmtree(target)
        else:
            target.unlink(missing_ok=True)
    subprocess.run(["git", "-C", str(project), "checkout", "-q", "--", "."], check=True)
    started = time.monotonic()
    proc = team.run_flow(
        f"register.model_name_prefix={name}",
        f"train.seed={seed}",  # a new seed per repeat: the team's run-cache holds the last one
        f"evaluator.seed={seed}",
        log_name=name,
    )
    code, result, log = team.flow_result(proc, log_name=name, timeout=7200)
    seconds = time.monotonic() - started
    assert code == 0 and result is not None, log[-5000:]
    return seconds, result


def overheads(result: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Per dispatched stage: its phases and overhead (task wall minus its `dvc repro`)."""
    found = {}
    for stage, info in result["stages"].items():
        t = info.get("timings") or {}
        if not t:
            continue
        child_start = t["child"] - t["setup"] - t["pull"] - t["repro"] - t["push"]
        phases = {**{k: t.get(k, 0.0) for k in OVERHEAD_KEYS}, "child_start": child_start}
        found[stage] = {**phases, "repro": t["repro"], "total": t["total"]}
        found[stage]["overhead"] = t["total"] - t["repro"]
    return found


def critical_chain(result: dict[str, Any], upstream: dict[str, list[str]]) -> list[str]:
    """From the stage that finished last, back through the upstream stage that finished last."""
    stages = result["stages"]
    chain = [max(stages, key=lambda s: stages[s]["finished"])]
    while ups := [u for u in upstream[chain[-1]] if u in stages]:
        chain.append(max(ups, key=lambda s: stages[s]["finished"]))
    return chain[::-1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--tiny", action="store_true", help="tests' tiny params (a quick check)")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--keep", action="store_true", help="keep the work folder")
    ap.add_argument("--report", type=Path, nargs="+", help="only print saved run-N.json files")
    args = ap.parse_args()
    if args.report:
        report([json.loads(p.read_text()) for p in args.report])
        return
    root = Path(tempfile.mkdtemp(prefix="gp-bench-mh-"))
    print(f"work folder {root}; load average {os.getloadavg()}", flush=True)
    runs: list[dict[str, Any]] = []
    with NetnsLab(["ctl", *WORKERS]) as lab:
        team = start_team(lab, root, tiny=args.tiny)
        try:
            t0 = time.monotonic()
            bring_up(team)
            for host, pools in WORKERS.items():
                for pool in pools:
                    team.start_worker(host, pool)
            team.wait_workers()
            print(f"services, deployments and workers up in {time.monotonic() - t0:.0f} s")
            from dvc.repo import Repo

            from pipelines.dvc_plan import read_graph

            with Repo(str(team.project)) as repo:
                upstream = {s: list(u) for s, u in read_graph(repo).upstream.items()}
            for i in range(args.repeats):
                single = run_single(team, f"bench-single-{i}", seed=100 + i)
                print(f"[{i}] single host: {single:.1f} s", flush=True)
                multi, result = run_multi(team, f"bench-multi-{i}", seed=100 + i)
                print(f"[{i}] dispatched:  {multi:.1f} s", flush=True)
                runs.append(
                    {"single": single, "multi": multi, "result": result, "upstream": upstream}
                )
                saved = root / f"run-{i}.json"
                saved.write_text(json.dumps(runs[-1]))  # `--report FILE` prints it again
        finally:
            team.close()
    report(runs)
    if not args.keep:
        for path in root.iterdir():  # the saved results stay
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
        print(f"results saved in {root}")


def report(runs: list[dict[str, Any]]) -> None:
    for i, run in enumerate(runs):
        result, single, multi = run["result"], run["single"], run["multi"]
        per = overheads(result)
        hosts = {s: v["host"] or "ctl" for s, v in result["stages"].items()}
        print(f"\n== repeat {i}: single {single:.1f} s, dispatched {multi:.1f} s "
              f"({multi / single:.2f}x)")  # fmt: skip
        cols = ["stage", "host", "repro", *OVERHEAD_KEYS, "overhead", "total"]
        print(" | ".join(f"{c:>11}" for c in cols))
        for stage, t in per.items():
            row = [stage, hosts[stage], *(f"{t[k]:.1f}" for k in cols[2:])]
            print(" | ".join(f"{c:>11}" for c in row))
        mean = sum(t["overhead"] for t in per.values()) / max(1, len(per))
        chain = critical_chain(result, run["upstream"])
        assert chain[0] == "download", f"the chain must reach the first stage: {chain}"
        on_path = sum(per[s]["overhead"] for s in chain if s in per)
        print(f"mean overhead per dispatched stage: {mean:.1f} s")
        print(f"critical chain: {' -> '.join(chain)}")
        print(f"dispatch overhead on it: {on_path:.1f} s = {100 * on_path / single:.1f}% of the "
              f"single-host run (goal <= 10%)")  # fmt: skip


if __name__ == "__main__":
    main()
