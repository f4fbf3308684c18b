"""The Prefect flow `genpipe-tune`: the VAE and the GAN tuned under the same budget, then judged.

    python -m pipelines.tune [--jobs 2] [--dispatch]   (make tune [DISPATCH=1])

Per family, `tune.budget` members drawn from its search space (`tune.space` in params.yaml) run
as one sweep stopping at `score_val@<family>`: scored on the validation split only. The best
member of each family then goes into one more sweep, both configurations together over
`tune.seeds` training seeds, stopping at `decide`: the verdict on the test split, pooled over
seeds. The flow only wires sweeps (pipelines.sweep); what is best is genpipe.sweeps.tune's call.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.states import Completed, Failed, State

from genpipe.config import load_params
from genpipe.errors import GenpipeError
from genpipe.registry.decision import FAMILIES
from genpipe.services.servers import prefect_api
from genpipe.settings import project_root
from genpipe.sweeps import tune
from genpipe.sweeps.report import MemberResult
from pipelines.sweep import (
    MEMBER_TIMEOUT,
    OUT,
    dataset_name,
    exit_code,
    missing_baseline,
    sweep_flow,
)

log = logging.getLogger(__name__)

FLOW_NAME = "genpipe-tune"


def _members(state: State) -> list[MemberResult]:
    """A sweep's member results, whether or not some failed; a sweep that could not start
    (a bad search space) stops the tuning with its error."""
    result = state.result(raise_on_failure=False)
    if isinstance(result, BaseException):
        raise result
    return list(result)


@flow(name=FLOW_NAME, log_prints=True)
def tune_flow(
    jobs: int = 2,
    project: str | None = None,
    member_timeout: float = MEMBER_TIMEOUT,
    dispatch: bool | None = None,
) -> State:
    root = Path(project).resolve() if project else project_root()
    config = load_params(root / "params.yaml").tune
    dataset = dataset_name(root)
    logger = get_run_logger()
    sizes, results = {}, {}
    for family in FAMILIES:
        sizes[family], drawn = tune.family_members(config, family)
        logger.info("%s: %d of %d configurations, scored on val", family, len(drawn), sizes[family])
        state = sweep_flow(
            tune.as_spec(drawn),
            tune.target(family),
            jobs,
            f"tune {dataset} {family}",
            str(root),
            member_timeout,
            dispatch,
            return_state=True,
        )
        results[family] = _members(state)
    best = {}
    for family in FAMILIES:
        ranked = tune.ranked(results[family], family, config.metric)
        if not ranked:
            raise GenpipeError(
                f"tune: every {family} member failed; their logs are under {root / OUT}"
            )
        best[family] = ranked[0]
    state = sweep_flow(
        tune.verdict_spec(best, config.seeds),
        "decide",
        jobs,
        f"tune {dataset} verdict",
        str(root),
        member_timeout,
        dispatch,
        return_state=True,
    )
    verdict_members = _members(state)
    from genpipe.sweeps.seeds import seeds_report

    register = load_params(root / "params.yaml").register
    metrics = {"generation": register.generation_metric, "restoration": register.restoration_metric}
    verdict = seeds_report(dataset, verdict_members, metrics)
    text = tune.report(dataset, config, sizes, results, verdict)
    out = root / OUT / f"tune-{dataset}"
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.md").write_text(text + "\n")
    create_markdown_artifact(markdown=text, key=f"tune-{dataset}"[:60].lower(), description="tune")
    print(text)
    print(f"\n(written to {out / 'report.md'})")
    failed = [r for rs in (*results.values(), verdict_members) for r in rs if r.outcome == "failed"]
    if failed:
        return Failed(message=f"{len(failed)} members failed", data=text)
    return Completed(message="tuned", data=text)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--jobs", type=int, default=2, help="members at once (default 2)")
    p.add_argument("--project", default=None, help="the DVC project (default: here)")
    p.add_argument("--dispatch", action=argparse.BooleanOptionalAction, default=None,
                   help="run members on workers (default: orchestration.dispatch)")  # fmt: skip
    args = p.parse_args(argv)
    if (error := missing_baseline(args.project, "tune")) is not None:
        return error
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    with prefect_api():
        state = tune_flow(args.jobs, args.project, dispatch=args.dispatch, return_state=True)
    return exit_code(state, "tune")


if __name__ == "__main__":
    raise SystemExit(main())
