"""The digits pipeline on one host against the same run dispatched to two workers, side by side.

    .venv/bin/python -m benchmarks.multihost [--tiny] [--repeats 1] [--stress N]   (root)
    .venv/bin/python -m benchmarks.multihost [--tiny] --sweep N                    (root)
    .venv/bin/python -m benchmarks.multihost [--tiny] [--repeats R] --floor [N]    (root)

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

`--floor N` then measures, on the same team, what the tools cost with none of genpipe's work
(benchmarks.floor): N runs of a trivial flow deployed on a stage pool (its warm worker, its job
variables), once with a pull step that only changes folder and once with the stages'
commit_checkout of the already fetched commit, each sent as dispatch sends a stage; N `dvc push`
of a new 10 KB file on a worker and N `dvc pull` of them on the controller, through DVC's API
(as genpipe calls it) and its CLI. It prints genpipe's per-stage phases beside the floor of each:
this run's dispatched stages, or with `--repeats 0` the last committed record, labelled so.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
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


def head(team: Team) -> str:
    return subprocess.run(["git", "-C", str(team.project), "rev-parse", "HEAD"],
                          capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip


def warm_workers(team: Team) -> dict[str, float]:
    """Each worker host fetches and installs the commit (the pull step a first run pays)."""
    code = (
        "from pipelines.stage_flow import commit_checkout\n"
        f"commit_checkout({team.client['GENPIPE_CODE_REMOTE_URL']!r}, {head(team)!r})\n"
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


TASK_KINDS = {"pull inputs": "pull", "dvc repro": "repro", "push": "push"}  # stage_flow's tasks


def worker_tasks(team: Team, run_id: str) -> dict[str, dict[str, float]]:
    """Per dispatched stage: the seconds of each task of its completed run on the worker
    (`pull` its inputs, `repro` its `dvc repro`, `push` its outputs and run record)."""
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    found = {}
    with team.prefect() as client:
        for run in stage_flow_runs(team):
            if run_id[:8] not in run.name or not run.state.is_completed():
                continue
            tasks = client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run.id]))
            )
            found[run.name.split(" ")[0]] = {
                kind: (t.end_time - t.start_time).total_seconds()
                for t in tasks
                for prefix, kind in TASK_KINDS.items()
                if t.name.startswith(prefix)
            }
    return found


def overheads(
    result: dict[str, Any], tasks: dict[str, dict[str, float]]
) -> dict[str, dict[str, float]]:
    """Per stage that dispatch touched: its phases and its overhead."""
    found = {}
    for stage, info in result["stages"].items():
        t = info.get("timings") or {}
        if "share" in t:  # a local stage whose outputs a worker reads
            found[stage] = {"share": t["share"], "overhead": t["share"]}
        elif "total" in t:
            on_worker = tasks[stage]
            found[stage] = {**t, **on_worker, "worker": t["child"] - on_worker["repro"],
                            "overhead": t["total"] - on_worker["repro"]}  # fmt: skip
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


FLOOR_POOL = "genpipe-cpu"  # worker-a's pool of train_evaluator and evaluate
FLOOR_FILE_BYTES = 10_000


def deploy_floor(team: Team) -> list[str]:
    """Two deployments of benchmarks.floor:noop like the stages' one on FLOOR_POOL (its pool,
    queue, job variables, so its warm worker): `bare`, whose one pull step only changes into the
    controller's checkout (every namespace host sees the same disk), and `checkout`, with the
    stages' own pull step (commit_checkout). Made with Prefect's client: prefect.yaml is what
    users deploy whole (`prefect deploy --all`), and a benchmark's flow is not theirs."""
    from pipelines.dispatch import STAGE_FLOW

    entrypoint = f"{team.project / 'benchmarks' / 'floor.py'}:noop"
    chdir = {"prefect.deployments.steps.set_working_directory": {"directory": str(team.project)}}
    with team.prefect() as client:
        stage = client.read_deployment_by_name(f"{STAGE_FLOW}/{FLOOR_POOL}")
        flow_id = client.create_flow_from_name("genpipe-floor")
        for name, steps in (("bare", [chdir]), ("checkout", stage.pull_steps)):
            client.create_deployment(flow_id, name, work_pool_name=stage.work_pool_name,
                                     work_queue_name=stage.work_queue_name, entrypoint=entrypoint,
                                     pull_steps=steps, job_variables=stage.job_variables)  # fmt: skip
    return ["bare", "checkout"]


def prefect_floor(team: Team, deployment: str, n: int) -> list[dict[str, float]]:
    """`n` runs of the trivial flow, each sent as dispatch sends a stage (run_on_pool: the
    commit as job variables, the controller following its state events)."""
    from genpipe.config import load_params
    from pipelines.dispatch import run_on_pool

    config = load_params(team.project / "params.yaml").orchestration
    commit, url = head(team), team.client["GENPIPE_CODE_REMOTE_URL"]
    found = []
    with team.prefect():  # run_deployment's client: the team's server
        for i in range(n):
            run = run_on_pool(config, f"genpipe-floor/{deployment}", {}, commit=commit,
                              code_url=url, name=f"floor {deployment} {i}", tags=[],
                              budget=300)  # fmt: skip
            seen = time.time()
            assert run.state.is_completed(), f"floor run {run.name}: {run.state}"
            found.append({"queue": seconds_of(run.created, run.start_time),
                          "run": seconds_of(run.start_time, run.end_time),
                          "seen": seen - run.created.timestamp()})  # fmt: skip
    return found


def on_host(team: Team, host: str, call: str) -> Any:
    """benchmarks.floor's `call` on a namespace host, in the controller's checkout; its RESULT."""
    env = team.ctl_env() if host == "ctl" else team.host_env(host)
    code = f"from pathlib import Path\nfrom benchmarks import floor\nfloor.{call}\n"
    done = team.lab[host].run([PYTHON, "-c", code], env=env, cwd=team.project, timeout=900)
    [line] = [ln for ln in done.stdout.splitlines() if ln.startswith("RESULT ")]
    return json.loads(line[7:])


def dvc_floor(team: Team, n: int) -> dict[str, dict[str, list[float]]]:
    """`dvc push` of n new small files on worker-a, then `dvc pull` of them on the controller."""
    pushed, pulled = team.root / "worker-a" / "floor-dvc", team.root / "ctl" / "floor-dvc"
    config = team.project / ".dvc" / "config.local"
    return {
        "push": on_host(team, "worker-a", f"push_times(Path({str(pushed)!r}), {n}, {FLOOR_FILE_BYTES})"),
        "pull": on_host(team, "ctl", f"pull_times(Path({str(pulled)!r}), Path({str(pushed)!r}), "
                        f"Path({str(config)!r}), {n})"),
    }  # fmt: skip


def run_floor(team: Team, n: int) -> dict[str, Any]:
    found: dict[str, Any] = {"n": n, "load_before": os.getloadavg(), "prefect": {}}
    for deployment in deploy_floor(team):
        found["prefect"][deployment] = rows = prefect_floor(team, deployment, n)
        print(f"[floor] genpipe-floor/{deployment}: {json.dumps(rows)}", flush=True)
    found["dvc"] = dvc_floor(team, n)
    found["load_after"] = os.getloadavg()
    return found


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--tiny", action="store_true", help="tests' tiny params (a quick check)")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--stress", type=int, default=0, help="busy processes during the dispatch")
    ap.add_argument("--sweep", type=int, default=0, metavar="N",
                    help="instead: a dispatched sweep of N members, one at a time")  # fmt: skip
    ap.add_argument("--floor", type=int, nargs="?", const=5, default=0, metavar="N",
                    help="then the tools' floor: N runs of a trivial flow on a stage pool, "
                         "N small-file `dvc push` and `dvc pull`")  # fmt: skip
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
                             "tasks": worker_tasks(team, result["pipeline_run_id"])})  # fmt: skip
                (root / f"run-{i}.json").write_text(json.dumps(runs[-1]))
            if args.sweep:
                print(f"[sweep] {load()}", flush=True)
                runs.append(run_sweep(team, args.sweep))
                print(f"[sweep] {runs[-1]['seconds']:.1f} s; {load()}", flush=True)
                (root / "sweep.json").write_text(json.dumps(runs[-1]))
            if args.floor:
                print(f"[floor] {load()}", flush=True)
                runs.append({"floor": run_floor(team, args.floor)})
                print(f"[floor] done; {load()}", flush=True)
                (root / "floor.json").write_text(json.dumps(runs[-1]))
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
        if "floor" in run:
            report_floor(run["floor"], [r for r in runs if "result" in r])
            continue
        result, single, multi = run["result"], run["single"], run["multi"]
        per = overheads(result, run["tasks"])
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
            "pull",
            "push",
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


PHASES = ("settle", "queue", "worker", "accept", "rest", "overhead")
RECORD = Path("docs/records/benchmarks/multihost.json")


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.1f} ({min(values):.1f}-{max(values):.1f})"


def report_floor(floor: dict[str, Any], stage_runs: list[dict[str, Any]]) -> None:
    """The floors, then genpipe's per-stage phases beside the tools' floor of each."""
    print(f"\n== the tools' floor, {floor['n']} repeats each; median (range) in s; load "
          + " -> ".join(" ".join(f"{x:.2f}" for x in floor[k]) for k in ("load_before", "load_after")))  # fmt: skip
    print(
        f"Prefect: a trivial flow on pool {FLOOR_POOL}'s warm worker, sent as dispatch sends a stage"
    )
    print(" | ".join(f"{c:>24}" for c in ("pull step", "created -> Running", "Running -> Completed",
                                          "created -> seen done")))  # fmt: skip
    for name, rows in floor["prefect"].items():
        step = {"bare": "chdir only", "checkout": "commit_checkout (warm)"}[name]
        cells = [step, *(spread([r[k] for r in rows]) for k in ("queue", "run", "seen"))]
        print(" | ".join(f"{c:>24}" for c in cells))
    dvc = floor["dvc"]
    print(f"DVC, one new {FLOOR_FILE_BYTES // 1000} KB file over the team's SSH remote: "
          + "; ".join(f"{op} ({'worker-a' if op == 'push' else 'ctl'}) API {spread(dvc[op]['api'])}, "
                      f"CLI {spread(dvc[op]['cli'])}" for op in ("push", "pull")))  # fmt: skip
    if stage_runs:
        rows = [t for r in stage_runs for t in overheads(r["result"], r["tasks"]).values()
                if "repro" in t]  # fmt: skip
        source = "this run's dispatched stages"
    else:
        record = json.loads(RECORD.read_text())
        rows = record["tables"]["overhead per dispatched stage, by phase"]
        source = f"NOT this run: the last record, {RECORD} ({record['date']})"
    genpipe = {k: statistics.mean(r[k] for r in rows) for k in PHASES if k != "rest"}
    genpipe["rest"] = genpipe["overhead"] - sum(genpipe[k] for k in PHASES[:4])
    prefect, med = floor["prefect"]["checkout"], statistics.median
    pull, push = med(dvc["pull"]["api"]), med(dvc["push"]["api"])
    tools: dict[str, float | None] = {
        "settle": None,  # DVC's run-cache look-up before sending: not measured
        "queue": med([r["queue"] for r in prefect]),
        "worker": med([r["run"] for r in prefect]) + pull + push,
        "accept": pull,
        "rest": med([r["seen"] - r["queue"] - r["run"] for r in prefect]),
    }
    tools["overhead"] = sum(v for v in tools.values() if v is not None)
    what = {
        "settle": "(DVC run-cache look-up: not measured)",
        "queue": "trivial flow, commit_checkout: created -> Running",
        "worker": "its Running -> Completed + DVC pull + DVC push (API)",
        "accept": "DVC pull on the controller (API)",
        "rest": "Completed -> the controller sees it (its state events)",
        "overhead": "sum",
    }
    print(
        f"\ngenpipe's overhead per dispatched stage (mean of {len(rows)}, {source}) "
        "beside the tools' floor (medians)"
    )
    print(f"{'phase':>10} | {'genpipe':>8} | {'floor':>8} | {'above':>8} | floor is")
    for k in PHASES:
        fl = tools[k]
        cells = [k, f"{genpipe[k]:.1f}", "-" if fl is None else f"{fl:.1f}",
                 f"{genpipe[k] - (fl or 0):.1f}"]  # fmt: skip
        print(" | ".join(f"{c:>10}" if j == 0 else f"{c:>8}" for j, c in enumerate(cells))
              + f" | {what[k]}")  # fmt: skip


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
