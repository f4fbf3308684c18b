"""`python -m pipelines.deploy_stages` (`make deploy-stages`): the Prefect server's side of dispatch.

Idempotent; run it once per server, and again after `orchestration:` changes in params.yaml:
- a process work pool for every pool `orchestration.pools` names (`local` aside);
- a deployment `genpipe-stage/<pool>` of the stage flow (pipelines/stage_flow.py) on each pool.
  Its pull step clones the code at run time: `repository` and `commit_sha` are `{{ $VAR }}`
  templates that Prefect resolves in the flow-run process from the environment the parent sets
  per run (job variable env: GENPIPE_CODE_REMOTE, GENPIPE_COMMIT). So every stage of a flow run
  runs the controller's commit, and the deployment never needs redeploying for new code;
- the zombie automation: a stage run whose heartbeats stop for `orchestration.zombie_after_seconds`
  (its host died or lost the network) is marked Crashed, and the parent sends the stage again.
  Self-hosted Prefect servers do not do this by themselves (docs: detect-zombie-flows).

Deployments are made here rather than in prefect.yaml so the pool names live in one place
(params.yaml): the stage -> pool map names the deployment `genpipe-stage/<pool>` as well.
"""

from __future__ import annotations

import os
import sys
from datetime import timedelta
from typing import Any

from genpipe.config import OrchestrationConfig, load_params
from genpipe.errors import GenpipeError
from genpipe.settings import project_root
from pipelines.stage_flow import FLOW_NAME

ENTRYPOINT = "pipelines/stage_flow.py:genpipe_stage"
ZOMBIE_AUTOMATION = "genpipe-crash-silent-stage-runs"
COMMIT_VAR, REMOTE_VAR = "GENPIPE_COMMIT", "GENPIPE_CODE_REMOTE"


def deployment_name(pool: str) -> str:
    """`flow/deployment` of the stage flow on a pool."""
    return f"{FLOW_NAME}/{pool}"


def pull_steps() -> list[dict[str, Any]]:
    """Clone the run's commit from the run's code remote; work in the clone."""
    return [
        {
            "prefect.deployments.steps.git_clone": {
                "id": "clone",
                "repository": "{{ $" + REMOTE_VAR + " }}",
                "commit_sha": "{{ $" + COMMIT_VAR + " }}",
            }
        },
        {"prefect.deployments.steps.set_working_directory": {"directory": "{{ clone.directory }}"}},
    ]


def deploy(config: OrchestrationConfig) -> list[str]:
    """Pools, deployments and the automation on the server PREFECT_API_URL names."""
    from prefect import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectNotFound
    from prefect.utilities.callables import parameter_schema
    from prefect.workers.process import ProcessWorker

    from pipelines.stage_flow import genpipe_stage

    made = []
    schema = parameter_schema(genpipe_stage.fn).model_dump_for_openapi()
    with get_client(sync_client=True) as client:
        flow_id = client.create_flow_from_name(FLOW_NAME)
        for pool in config.remote_pools():
            try:
                client.read_work_pool(pool)
            except ObjectNotFound:
                client.create_work_pool(
                    WorkPoolCreate(
                        name=pool,
                        type="process",
                        base_job_template=ProcessWorker.get_default_base_job_template(),
                    )
                )
                made.append(f"work pool {pool}")
            client.create_deployment(  # an upsert: the same name updates the deployment
                flow_id=flow_id,
                name=pool,
                work_pool_name=pool,
                entrypoint=ENTRYPOINT,
                pull_steps=pull_steps(),
                parameter_openapi_schema=schema,
                description=f"one genpipe DVC stage on a worker of {pool}, at the parent's commit",
                tags=["genpipe", "genpipe-stage"],
            )
            made.append(f"deployment {deployment_name(pool)}")
    install_zombie_automation(config.zombie_after_seconds)
    made.append(f"automation {ZOMBIE_AUTOMATION} ({config.zombie_after_seconds} s)")
    return made


def install_zombie_automation(within_seconds: int) -> None:
    """After a flow run's heartbeat, expect another event of it within `within_seconds`; else
    mark it Crashed (Prefect's documented recipe). Replaces an older copy of itself."""
    from prefect.automations import Automation
    from prefect.client.schemas.objects import StateType
    from prefect.events.actions import ChangeFlowRunState
    from prefect.events.schemas.automations import EventTrigger, Posture
    from prefect.events.schemas.events import ResourceSpecification

    while True:
        try:
            Automation.read(name=ZOMBIE_AUTOMATION).delete()
        except ValueError:  # Prefect's "not found" for automations
            break
    Automation(
        name=ZOMBIE_AUTOMATION,
        description="genpipe: a stage run whose worker stopped sending heartbeats is Crashed",
        trigger=EventTrigger(
            after={"prefect.flow-run.heartbeat"},
            expect={"prefect.flow-run.*"},
            match=ResourceSpecification({"prefect.resource.id": ["prefect.flow-run.*"]}),
            for_each={"prefect.resource.id"},
            posture=Posture.Proactive,
            threshold=1,
            within=timedelta(seconds=within_seconds),
        ),
        actions=[
            ChangeFlowRunState(
                state=StateType.CRASHED,
                message=f"no heartbeat for {within_seconds} s: its worker host died or lost "
                "the network",
            )
        ],
    ).create()


def main(argv: list[str] | None = None) -> int:
    import argparse

    argparse.ArgumentParser(
        prog="python -m pipelines.deploy_stages", description=__doc__
    ).parse_args(argv)
    if not os.environ.get("PREFECT_API_URL"):
        print(
            "genpipe: error: set PREFECT_API_URL to the team's Prefect server "
            '(eval "$(make -s services-env)"); a temporary local API would vanish with this command',
            file=sys.stderr,
        )
        return 2
    try:
        config = load_params(project_root() / "params.yaml").orchestration
        for line in deploy(config):
            print(line)
    except GenpipeError as exc:
        print(f"genpipe: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
