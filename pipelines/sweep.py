"""The Prefect flow `genpipe-sweep`: a set of DVC experiments, run side by side, compared.

    python -m pipelines.sweep "train.seed=range(0,3)" [--target decide] [--jobs 2] [-n NAME]
    make sweep SWEEP="train.seed=range(0,3)" [DISPATCH=1]

The sweep is written in DVC's own sweep syntax and expanded by DVC's parser (genpipe.sweeps.plan).
Each member is one DVC experiment (`dvc exp run --temp`, pipelines.experiments), a Prefect task;
a Prefect global concurrency limit bounds how many run at once, across every sweep on the same
Prefect API. With dispatch (`--dispatch`, orchestration.dispatch) each runs on a worker of
orchestration.sweep_pool and comes back with `dvc exp pull` (pipelines.sweep_member). Members stop at `--target` (default `decide`): a sweep never promotes; `dvc exp
apply <member>` then `dvc repro` does, under the decision rule.

- A failed member fails only its own task; the others finish and the sweep reports it.
- A member `dvc exp show` already holds (same name: same target and params) is not rerun.
- MLflow: one parent run per sweep (found again on a rerun), a nested child per member with its
  overrides as params and its headline metrics; the member's stage runs nest under the child.
  The sweep's table is an artifact of the parent, and a Prefect table artifact.
- A sweep over train.seed also prints the multi-seed verdict and the seed spread flags.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import re
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.futures import wait
from prefect.states import Completed, Failed, State

from genpipe import tracking
from genpipe.errors import GenpipeError
from genpipe.services.servers import prefect_api
from genpipe.settings import project_root
from genpipe.sweeps import report, seeds
from genpipe.sweeps.plan import Member, SweepError, expand, member_name
from genpipe.sweeps.report import MemberResult
from pipelines import experiments, sweep_member

log = logging.getLogger(__name__)

FLOW_NAME = "genpipe-sweep"
CONCURRENCY_LIMIT = "genpipe-sweep-members"  # Prefect global concurrency limit: members at once
MEMBER_TIMEOUT = 6 * 3600.0
OUT = Path(".genpipe/sweeps")  # logs and tables, per sweep (git-ignored)


def plan(root: Path, spec: str, target: str) -> list[Member]:
    """The members of `spec`, each named by its target and its params after the overrides;
    every override set is checked against params.yaml's schema before anything runs."""
    import yaml

    from genpipe.overrides import apply_overrides

    _check_target(root, target)
    members = []
    with tempfile.TemporaryDirectory() as scratch:
        for overrides in expand(spec):
            copy = Path(scratch) / "params.yaml"
            shutil.copyfile(root / "params.yaml", copy)
            apply_overrides(copy, list(overrides))
            params = yaml.safe_load(copy.read_text())
            members.append(Member(member_name(overrides, target, params), overrides, target))
    return members


def _check_target(root: Path, target: str) -> None:
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        names = [stage.addressing for stage in repo.index.stages]
    if target not in names:
        raise SweepError(f"no stage {target!r} in dvc.yaml; a sweep stops at one of {names}")


def sweep_id(members: list[Member]) -> str:
    return hashlib.sha256(" ".join(sorted(m.name for m in members)).encode()).hexdigest()[:12]


def dataset_name(root: Path) -> str:
    meta = root / "data/prepared/meta.json"
    try:
        return str(json.loads(meta.read_text())["dataset"])
    except (OSError, ValueError, KeyError):
        raise GenpipeError(
            f"{meta}: not found; run the pipeline once first (`make pipeline`): sweep members "
            "start from the workspace's outputs"
        ) from None


def ensure_limit(jobs: int) -> None:
    """The global concurrency limit every member takes a slot of, set to `jobs`."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        client.upsert_global_concurrency_limit_by_name(CONCURRENCY_LIMIT, jobs)


@task(task_run_name="{member.name}", cache_policy=NO_CACHE)
def member_task(
    root: Path, member: Member, parent_id: str, held: bool, jobs: int, logs: Path, timeout: float,
    dispatcher: Any = None,
) -> MemberResult | State:  # fmt: skip
    """Run one member as a DVC experiment (on a worker: `dispatcher`), unless `dvc exp show`
    already holds it."""
    from prefect.concurrency.sync import concurrency

    logger = get_run_logger()
    run_id, recorded = tracking.member_run(parent_id, member.name, member.params())
    if held:
        logger.info("%s: held by `dvc exp show` already, not rerun", member.name)
        return MemberResult(member, "held", run_id=None if recorded else run_id)
    log_path = logs / f"{member.name}.log"
    with concurrency(CONCURRENCY_LIMIT, occupy=1, strict=True):
        if dispatcher is None:
            env = experiments.member_env(run_id, jobs)
            run = experiments.run_member(root, member, env, log_path, timeout)
        else:
            run = sweep_member.run_member(dispatcher, member, run_id, log_path, timeout)
    if run.ok:
        logger.info("%s: done in %.0f s", member.name, run.seconds)
        return MemberResult(member, "ran", run.seconds, log=str(run.log_path), run_id=run_id)
    logger.error(
        "%s failed (exit %d):\n%s", member.name, run.returncode, experiments.tail(run.log_path)
    )
    tracking.close_run(
        run_id,
        {"seconds": run.seconds},
        {"genpipe.status": "failed", "genpipe.log": run.log_path},
        failed=True,
    )
    result = MemberResult(member, "failed", run.seconds, log=str(run.log_path), run_id=run_id)
    return Failed(message=f"exit {run.returncode}; log {run.log_path}", data=result)


def collect(root: Path, rev: str, results: list[MemberResult]) -> list[MemberResult]:
    """Attach each finished member's metrics (from `dvc exp show`: those its target computed)
    and close its MLflow run."""
    held = experiments.held_experiments(root, rev)
    targets = {r.member.target for r in results}
    fresh = {target: experiments.target_metrics(root, target) for target in targets}
    done = []
    for r in results:
        exp = held.get(r.member.name)
        if r.outcome == "failed" or exp is None:
            if r.outcome != "failed":  # exit 0 but no experiment on the baseline: HEAD moved?
                log.error(
                    "%s: finished, but `dvc exp show` has no such experiment on %s "
                    "(did HEAD move during the sweep?)",
                    r.member.name,
                    rev[:7],
                )
                r = MemberResult(r.member, "failed", r.seconds, log=r.log, run_id=r.run_id)
            done.append(r)
            continue
        mine = {path: data for path, data in exp.metrics.items() if path in fresh[r.member.target]}
        metrics = report.merged_metrics(mine)
        r = MemberResult(r.member, r.outcome, r.seconds, metrics, exp.rev, r.log, r.run_id)
        numbers = {k: v for k, v in report.flat(metrics).items() if _is_number(v)}
        if r.seconds is not None:
            numbers["seconds"] = r.seconds
        tags = {
            "dvc.experiment": r.member.name,
            "dvc.rev": exp.rev,
            "genpipe.sweep_outcome": r.outcome,
        }
        if r.run_id is not None:  # None: its run was recorded by an earlier run of this sweep
            tracking.close_run(r.run_id, numbers, tags)
        done.append(r)
    return done


def _result(member: Member, state: State) -> MemberResult:
    """A member task's result; a task that crashed outside DVC (MLflow down...) is a failure."""
    result = state.result(raise_on_failure=False)
    if isinstance(result, MemberResult):
        return result
    log.error("%s: %s", member.name, state.message)
    return MemberResult(member, "failed", log=str(state.message))


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def publish(
    root: Path, name: str, parent_id: str, results: list[MemberResult], dataset: str, out: Path
) -> str:
    """The sweep's table and (over seeds) its verdict: to `out`, MLflow and Prefect artifacts."""
    from genpipe.config import load_params

    table = report.rows(results)
    register = load_params(root / "params.yaml").register
    metrics = {"generation": register.generation_metric, "restoration": register.restoration_metric}
    verdict = seeds.seeds_report(dataset, results, metrics)
    failed = [r for r in results if r.outcome == "failed"]
    text = f"Sweep {name}: {len(results)} members, {len(failed)} failed\n\n{report.markdown(table)}"
    if failed:
        text += "\n\nFailed members (logs):\n" + "\n".join(
            f"- {r.member.name}: {r.log}" for r in failed
        )
    if verdict:
        text += "\n\n" + verdict
    out.mkdir(parents=True, exist_ok=True)
    (out / "sweep.md").write_text(text + "\n")
    (out / "sweep.json").write_text(json.dumps(table, indent=1) + "\n")
    tracking.close_run(
        parent_id,
        {"members": len(results), "members_failed": len(failed)},
        artifacts=[out / "sweep.md", out / "sweep.json"],
        failed=bool(failed),
    )
    key = re.sub(r"[^a-z0-9-]+", "-", f"sweep-{name}".lower()).strip("-")[:60]
    create_table_artifact(table=table, key=key, description=f"sweep {name}")
    if verdict:
        create_markdown_artifact(markdown=verdict, key=f"{key}-seeds", description="over seeds")
    return text


@flow(name=FLOW_NAME, log_prints=True)
def sweep_flow(
    sweep: str,
    target: str = "decide",
    jobs: int = 2,
    name: str | None = None,
    project: str | None = None,
    member_timeout: float = MEMBER_TIMEOUT,
    dispatch: bool | None = None,
) -> State:
    """Run the sweep's members (at most `jobs` at once); the table and verdict come back.
    `dispatch` (None: orchestration.dispatch): each on a worker of orchestration.sweep_pool."""
    from genpipe.config import load_params
    from genpipe.config.orchestration import LOCAL

    root = Path(project).resolve() if project else project_root()
    members = plan(root, sweep, target)
    dataset = dataset_name(root)
    name = name or sweep
    ident = sweep_id(members)
    out = root / OUT / f"{re.sub(r'[^A-Za-z0-9._-]+', '-', name)[:40]}-{ident[:7]}"
    rev = experiments.baseline(root)
    held = experiments.held_experiments(root, rev)
    config = load_params(root / "params.yaml").orchestration
    dispatcher = None
    if (config.dispatch if dispatch is None else dispatch) and config.sweep_pool != LOCAL:
        dispatcher = sweep_member.prepare(root, config, ident)
    logger = get_run_logger()
    logger.info(
        "sweep %s: %d members (%d held already), %d at once%s -> %s",
        name,
        len(members),
        sum(m.name in held for m in members),
        jobs,
        f" on pool {config.sweep_pool}" if dispatcher else "",
        out,
    )
    parent = tracking.open_sweep_run(
        dataset,
        ident,
        f"sweep {name}",
        {"sweep": sweep, "target": target, "jobs": jobs, "members": len(members)},
    )
    ensure_limit(jobs)
    futures = [
        member_task.submit(
            root, m, parent, m.name in held, jobs, out / "logs", member_timeout, dispatcher
        )
        for m in members
    ]
    wait(futures)
    results = collect(
        root, rev, [_result(m, f.state) for m, f in zip(members, futures, strict=True)]
    )
    text = publish(root, name, parent, results, dataset, out)
    print(text)
    failed = [r.member.name for r in results if r.outcome == "failed"]
    if failed:
        return Failed(
            message=f"{len(failed)} of {len(results)} members failed: {', '.join(failed)}",
            data=results,
        )
    return Completed(message=f"{len(results)} members", data=results)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("sweep", nargs="+", help="-S overrides in DVC's sweep syntax; ';' between grids")
    p.add_argument("--target", default="decide", help="the stage members stop at (default decide)")
    p.add_argument("--jobs", type=int, default=2, help="members at once (default 2)")
    p.add_argument("-n", "--name", default=None, help="the sweep's name (default: the spec)")
    p.add_argument("--project", default=None, help="the DVC project (default: here)")
    p.add_argument("--dispatch", action=argparse.BooleanOptionalAction, default=None,
                   help="run members on workers (default: orchestration.dispatch)")  # fmt: skip
    args = p.parse_args(argv)
    if (error := missing_baseline(args.project, "sweep")) is not None:
        return error
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    with prefect_api():
        state = sweep_flow(
            " ".join(args.sweep), args.target, args.jobs, args.name, args.project,
            dispatch=args.dispatch, return_state=True,
        )  # fmt: skip
    return exit_code(state, "sweep")


def missing_baseline(project: str | None, what: str) -> int | None:
    """2, after one line saying to run the pipeline first, when there is no baseline to sweep
    from; checked before the flow starts, so no flow run fails over it."""
    try:
        dataset_name(Path(project).resolve() if project else project_root())
    except GenpipeError as exc:
        print(f"genpipe {what}: error: {exc}", file=sys.stderr)
        return 2
    return None


def exit_code(state: State, what: str) -> int:
    """0 when every member finished; 1 when some failed; 2 for a user error (the message says
    what to fix)."""
    if state.is_completed():
        return 0
    result = state.result(raise_on_failure=False)
    if isinstance(result, GenpipeError):
        print(f"genpipe {what}: error: {result}", file=sys.stderr)
        return 2
    print(f"genpipe {what}: {state.message}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    raise SystemExit(main())
