"""The `genpipe-stage` flow: one DVC stage, run by a worker of a work pool, in a clone of the
flow run's commit. The `genpipe-pipeline` flow dispatches it (pipelines/dispatch.py); it is
deployed once per work pool by pipelines/deploy_stages.py.

This module imports only Prefect at the top: the flow puts the clone's code first on sys.path
before anything of genpipe is imported, so the worker's own checkout never runs a stage.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from prefect import flow

FLOW_NAME = "genpipe-stage"
RESULT_KEY = "genpipe-stage-result"  # the artifact the controller reads the result from


def use_clone(clone: Path) -> None:
    """Import genpipe and pipelines from the clone; fail if genpipe came from elsewhere."""
    for path in (str(clone / "src"), str(clone)):
        if path in sys.path:
            sys.path.remove(path)
        sys.path.insert(0, path)
    import genpipe

    if not Path(genpipe.__file__).resolve().is_relative_to(clone.resolve()):
        raise RuntimeError(
            f"this worker imports genpipe from {genpipe.__file__}, not from the clone {clone}"
        )


def render_result(result: dict[str, Any]) -> str:
    """The result artifact: a line for people, then the JSON the controller parses."""
    head = (
        f"stage **{result['stage']}** {result['outcome']} on host **{result['host']}** "
        f"at commit `{result['commit'][:12]}`"
    )
    return f"{head}\n\n```json\n{json.dumps(result)}\n```\n"


def parse_result(markdown: str) -> dict[str, Any]:
    """The JSON block of a result artifact."""
    start = markdown.index("```json\n") + len("```json\n")
    return json.loads(markdown[start : markdown.rindex("\n```")])


@flow(name=FLOW_NAME, log_prints=True)
def genpipe_stage(
    stage: str,
    commit: str,
    overrides: list[str],
    params_sha256: str,
    lock: dict[str, Any],
    pull: list[str],
    uncached: list[str],
    pipeline_run_id: str,
    timeout_seconds: float,
) -> dict[str, Any]:
    """Run one stage in this clone; publish its dvc.lock entry and outputs as an artifact."""
    import os

    from prefect.artifacts import create_markdown_artifact

    clone = Path.cwd()
    use_clone(clone)
    from pipelines.stage_worker import StageRequest, run

    request = StageRequest(
        stage=stage,
        commit=commit,
        overrides=overrides,
        params_sha256=params_sha256,
        lock=lock,
        pull=pull,
        uncached=uncached,
        pipeline_run_id=pipeline_run_id,
        timeout_seconds=timeout_seconds,
    )
    result = run(clone, request, os.environ)
    print(f"stage {stage}: {result['outcome']} on {result['host']}; phases {result['timings']}")
    create_markdown_artifact(
        render_result(result), key=RESULT_KEY, description=f"genpipe stage {stage}"
    )
    return result
