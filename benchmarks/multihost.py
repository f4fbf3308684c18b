"""The digits pipeline on one host against the same run dispatched to two workers, side by side.

    .venv/bin/python -m benchmarks.multihost [--tiny] [--repeats 1] [--stress N]   (root)
    .venv/bin/python -m benchmarks.multihost [--tiny] --sweep N                    (root)

Hosts are network namespaces (tests/netns.py): `ctl` runs the team services and is the
controller; `worker-a` (pools genpipe-gpu and genpipe-cpu) and `worker-b` (genpipe-gpu) run
`python -m pipelines.worker`, as in tests/e2e/test_multihost.py, with the tests' placement
(tests.e2e.multihost.TEST_POOLS): data stages, decide and register on the controller, the three
trainings and evaluate on workers. The workers are warm: each has fetched and installed the
commit once before the measured runs (that one-off cost is printed too). Each repeat runs, on
fresh checkouts of the same commit and params (another registered model prefix, so neither run
scores the other's champion; new seeds, so no repeat restores the last one from the run-cache):
- single: `python -m pipelines` on ctl, every stage local (against the same servers);
- multi:  the same flow with dispatch on.
Every host shares this machine's cores, so the dispatched run cannot be faster here: the
comparison measures what dispatch costs. A dispatched stage's overhead is its task's wall time
minus the `dvc repro` task of its run on the worker (read from Prefect); a local stage that feeds
a worker adds the push of its outputs. The overhead on the critical path (the chain of stages
that finished last) is compared with the single-host run's wall time. `--stress N` runs N
busy processes (niced) through the dispatched run: a measurement under load. Load averages are
printed before and after each run.

`--sweep N` measures a dispatched sweep instead, on the same team: the controller makes and
shares a baseline (`dvc repro`, `genpipe share`), the workers fetch that commit, then
`python -m pipelines.sweep "train.seed=range(10,10+N)" --dispatch --jobs 1` sends the members one
after another, each run whole on a warm worker of orchestration.sweep_pool. A member's overhead
is its wall time as the controller sees it (from sending it to its pulled experiment: the
member's MLflow run's `seconds`) minus its worker's `dvc exp run` task (read from Prefect), split
into the phases Prefect records; the sweep's wall time is compared with the sum of its members'
stage times (benchmarks.sweep).
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
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from benchmarks import sweep as sweep_bench
from tests.e2e.multihost import (
    PYTHON,
    Team,
    bring_up,
    ctl_command,
    share_baseline,
    stage_flow_runs,
    start_team,
)
from tests.netns import NetnsLab

WORKERS = {"worker-a": ["genpipe-gpu", "genpipe-cpu"], "worker-b": ["genpipe-gpu"]}


def load() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def warm_workers(team: Team) -> dict[str, float]:
    """Each worker host fetches and installs the commit (the pull step a first run pays)."""
    commit = subprocess.run(["git", "-C", str(team.project), "rev-parse", "HEAD"],
                            capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    code = (
        "from pipelines.stage_flow import commit_checkout\n"
        f"commit_checkout({team.client['GENPIPE_CODE_REMOTE_URL']!r}, {commit!r})\n"
    )
    seconds = {}
    for host in WORKERS:
        from pipelines.code_remote import git_env

        started = time.monotonic()
        team.lab[host].run([PYTHON, "-c", code], env=git_env(team.host_env(host)), timeout=900)
        seconds[host] = time.monotonic() - started
    return seconds


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
    done = team.ctl.run([PYTHON, "-m", "pipelines"], env=team.ctl_env(), cwd=project,
                        timeout=7200, check=False)  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return time.monotonic() - started


@contextmanager
def stress(n: int):
    """N busy processes, niced, for the duration (a machine under load)."""
    hogs = [subprocess.Popen(["nice", "-n", "5", sys.executable, "-c", "while True: pass"])
            for _ in range(n)]  # fmt: skip
    try:
        yield
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()


def run_multi(team: Team, name: str, seed: int, hogs: int) -> tuple[float, dict[str, Any]]:
    """The dispatched run, in the controller's checkout reset to a fresh state."""
    project = team.project
    for path in ("data", ".dvc/cache", "dvc.lock", ".genpipe"):
        target = project / path
        if target.is_dir():
            shutil.rmtree(target)
        else:
            target.unlink(missing_ok=True)
    subprocess.run(["git", "-C", str(project), "checkout", "-q", "--", "."], check=True)
    with stress(hogs):
        started = time.monotonic()
        proc = team.run_flow(f"register.model_name_prefix={name}", f"train.seed={seed}",
                             f"evaluator.seed={seed}", log_name=name)  # fmt: skip
        code, result, log = team.flow_result(proc, log_name=name, timeout=7200)
        seconds = time.monotonic() - started
    assert code == 0 and result is not None, log[-5000:]
    return seconds, result


def repro_seconds(team: Team, run_id: str) -> dict[str, float]:
    """Per dispatched stage: the `dvc repro` task of its completed run on the worker."""
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    found = {}
    with team.prefect() as client:
        for run in stage_flow_runs(team):
            if run_id[:8] not in run.name or not run.state.is_completed():
                continue
            stage = run.name.split(" ")[0]
            tasks = client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run.id]))
            )
            [repro] = [t for t in tasks if t.name.startswith("dvc repro")]
            found[stage] = (repro.end_time - repro.start_time).total_seconds()
    return found


def overheads(result: dict[str, Any], repro: dict[str, float]) -> dict[str, dict[str, float]]:
    """Per stage that dispatch touched: its phases and its overhead."""
    found = {}
    for stage, info in result["stages"].items():
        t = info.get("timings") or {}
        if "share" in t:  # a local stage whose outputs a worker reads
            found[stage] = {"share": t["share"], "overhead": t["share"]}
        elif "total" in t:
            on_worker = t["child"] - repro[stage]
            found[stage] = {**t, "repro": repro[stage], "worker": on_worker,
                            "overhead": t["total"] - repro[stage]}  # fmt: skip
    return found


def critical_chain(result: dict[str, Any], upstream: dict[str, list[str]]) -> list[str]:
    """From the stage that finished last, back through the upstream stage that finished last."""
    stages = result["stages"]
    chain = [max(stages, key=lambda s: stages[s]["finished"])]
    while ups := [u for u in upstream[chain[-1]] if u in stages]:
        chain.append(max(ups, key=lambda s: stages[s]["finished"]))
    return chain[::-1]


def seconds_of(start: Any, end: Any) -> float:
    return (end - start).total_seconds()


def run_sweep(team: Team, n: int) -> dict[str, Any]:
    """The dispatched sweep of `n` seeds, one member at a time; its figures per member."""
    from prefect.client.schemas.filters import (
        FlowFilter,
        FlowFilterName,
        FlowRunFilter,
        FlowRunFilterId,
    )

    from pipelines.sweep_member import MEMBER_FLOW

    spec = f"train.seed=range(10,{10 + n})"
    started = time.monotonic()
    ctl_command(team, PYTHON, "-m", "pipelines.sweep", spec, "--dispatch", "--jobs", "1",
                "-n", "bench", timeout=7200)  # fmt: skip
    seconds = time.monotonic() - started
    with team.mlflow() as client:
        experiments = [e.experiment_id for e in client.search_experiments()]
        [parent] = client.search_runs(experiments, "tags.`genpipe.stage` = 'sweep'")
        rows = sweep_bench.members(client, experiments, parent)
        text = sweep_bench.summary(parent, rows)
    with team.prefect() as client:
        runs = client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=[MEMBER_FLOW]))
        )
        for row in rows:
            [run] = [
                r for r in runs if f"({row['run_id'][:8]})" in r.name and r.state.is_completed()
            ]
            tasks = client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run.id]))
            )
            task = {t.name.split(" ")[2]: t for t in tasks if t.name.startswith("dvc exp ")}
            exp_run, push = (
                seconds_of(task[k].start_time, task[k].end_time) for k in ("run", "push")
            )
            setup = seconds_of(run.start_time, task["run"].start_time)
            row.update(
                host=(run.labels or {}).get("prefect.worker.name"),
                exp_run=exp_run,
                queue=seconds_of(run.created, run.start_time),
                setup=setup,
                push=push,
                rest=seconds_of(run.start_time, run.end_time) - setup - exp_run - push,
                back=row["wall"] - seconds_of(run.created, run.end_time),
            )
    return {"sweep": spec, "seconds": seconds, "members": rows, "summary": text}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--tiny", action="store_true", help="tests' tiny params (a quick check)")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--stress", type=int, default=0, help="busy processes during the dispatch")
    ap.add_argument("--sweep", type=int, default=0, metavar="N",
                    help="instead: a dispatched sweep of N members, one at a time")  # fmt: skip
    ap.add_argument("--keep", action="store_true", help="keep the work folder")
    ap.add_argument(
        "--report", type=Path, nargs="+", help="only print saved run-N.json or sweep.json files"
    )
    args = ap.parse_args()
    if args.report:
        report([json.loads(p.read_text()) for p in args.report])
        return
    root = Path(tempfile.mkdtemp(prefix="gp-bench-mh-"))
    print(f"work folder {root}; {load()}", flush=True)
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
            if args.sweep:
                t0 = time.monotonic()
                share_baseline(team)
                print(f"baseline made and shared in {time.monotonic() - t0:.0f} s; {load()}")
            warm = warm_workers(team)
            print("first fetch + install of the commit per worker (once per commit): "
                  + ", ".join(f"{h} {s:.1f} s" for h, s in warm.items()), flush=True)  # fmt: skip
            from dvc.repo import Repo

            from pipelines.plan import read_graph

            os.chdir(team.project)  # DVC's API reads stage names from the project folder
            with Repo(str(team.project)) as repo:
                upstream = {s: list(u) for s, u in read_graph(repo).upstream.items()}
            for i in range(0 if args.sweep else args.repeats):
                print(f"[{i}] {load()}", flush=True)
                single = run_single(team, f"bench-single-{i}", seed=100 + i)
                print(f"[{i}] single host: {single:.1f} s; {load()}", flush=True)
                multi, result = run_multi(team, f"bench-multi-{i}", 100 + i, args.stress)
                print(f"[{i}] dispatched:  {multi:.1f} s; {load()}", flush=True)
                runs.append({"single": single, "multi": multi, "result": result,
                             "upstream": upstream, "stress": args.stress,
                             "repro": repro_seconds(team, result["pipeline_run_id"])})  # fmt: skip
                (root / f"run-{i}.json").write_text(json.dumps(runs[-1]))
            if args.sweep:
                print(f"[sweep] {load()}", flush=True)
                runs.append(run_sweep(team, args.sweep))
                print(f"[sweep] {runs[-1]['seconds']:.1f} s; {load()}", flush=True)
                (root / "sweep.json").write_text(json.dumps(runs[-1]))
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
        if "sweep" in run:
            report_sweep(run)
            continue
        result, single, multi = run["result"], run["single"], run["multi"]
        per = overheads(result, run["repro"])
        hosts = {s: v["host"] or "ctl" for s, v in result["stages"].items()}
        print(f"\n== repeat {i} ({run['stress']} busy processes during the dispatch): single "
              f"{single:.1f} s, dispatched {multi:.1f} s ({multi / single:.2f}x)")  # fmt: skip
        cols = [
            "stage",
            "host",
            "repro",
            "settle",
            "queue",
            "worker",
            "accept",
            "share",
            "overhead",
        ]
        print(" | ".join(f"{c:>15}" for c in cols))
        for stage, t in per.items():
            row = [stage, hosts[stage], *(f"{t[k]:.1f}" if k in t else "-" for k in cols[2:])]
            print(" | ".join(f"{c:>15}" for c in row))
        dispatched = [t["overhead"] for t in per.values() if "repro" in t]
        mean = sum(dispatched) / max(1, len(dispatched))
        chain = critical_chain(result, run["upstream"])
        on_path = sum(per[s]["overhead"] for s in chain if s in per)
        print(f"mean overhead per dispatched stage (warm workers): {mean:.1f} s (goal <= 5 s)")
        print(f"critical chain: {' -> '.join(chain)}")
        print(f"dispatch overhead on it: {on_path:.1f} s = {100 * on_path / single:.1f}% of the "
              f"single-host run (goal <= 5%)")  # fmt: skip


def report_sweep(run: dict[str, Any]) -> None:
    rows = run["members"]
    print(f"\n== dispatched sweep {run['sweep']!r}, one member at a time, warm workers "
          f"({run['seconds']:.1f} s as the command ran)")  # fmt: skip
    cols = ["member", "host", "wall", "exp_run", "overhead", "queue", "setup", "push", "rest",
            "back"]  # fmt: skip
    print(" | ".join(f"{c:>12}" for c in cols))
    for r in rows:
        over = r["wall"] - r["exp_run"]
        cells = [r["member"][:12], r["host"], *(f"{v:.1f}" for v in (r["wall"], r["exp_run"], over)),
                 *(f"{r[k]:.1f}" for k in cols[5:])]  # fmt: skip
        print(" | ".join(f"{c:>12}" for c in cells))
    mean = sum(r["wall"] - r["exp_run"] for r in rows) / max(1, len(rows))
    print(f"mean overhead per member run whole on one warm worker: {mean:.1f} s (goal <= 10 s)")
    print(f"against the members' MLflow stage runs (benchmarks.sweep): {run['summary']}")


if __name__ == "__main__":
    main()
