"""`python -m pipelines.deploy` (`make deploy-stages`, `make prefect-deploy`): the Prefect server's
side, idempotently: the work pools prefect.yaml names, `prefect deploy --all`, and the automations
of params.yaml's `orchestration:` that end a dispatched run which cannot end well by itself.
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

from genpipe.config import OrchestrationConfig, load_params
from genpipe.config.orchestration import LOCAL
from genpipe.errors import GenpipeError
from genpipe.settings import project_root
from pipelines.stage_flow import COMMIT_VAR, REMOTE_VAR

FINAL = ["Completed", "Failed", "Crashed", "Cancelled", "Cancelling"]
NO_WORKER = "NoWorker"  # the name of the state a run no worker took ends in


def expected_automations(config: OrchestrationConfig) -> list[Any]:
    """The automations of these params (Prefect's Automation objects, not yet created)."""
    from prefect.automations import Automation

    from pipelines.dispatch import DISPATCH_TAG, stage_tag

    def proactive(after: str, expect: list[str], within: float, tag: str = "") -> dict[str, Any]:
        match = {"prefect.resource.role": "tag", "prefect.resource.id": f"prefect.tag.{tag}"}
        return {"type": "event", "posture": "Proactive", "after": [f"prefect.flow-run.{after}"],
                "expect": [f"prefect.flow-run.{e}" for e in expect], "threshold": 1,
                "match": {"prefect.resource.id": "prefect.flow-run.*"}, "for_each": ["prefect.resource.id"],
                "within": timedelta(seconds=within), **({"match_related": match} if tag else {})}  # fmt: skip

    zombie = config.zombie_after_seconds
    specs = [
        {
            "name": "genpipe-zombie",
            # dispatched runs only: a run in the flow's own process ends with that process
            "description": "a dispatched stage run whose heartbeats stop is Crashed",
            "trigger": proactive("heartbeat", ["*"], zombie, DISPATCH_TAG),
            "actions": [{"type": "change-flow-run-state", "state": "CRASHED", "name": "NoHeartbeat",
                         "message": f"no heartbeat for {zombie} s: its worker host died or lost "
                         "the network"}],
        },
        {
            "name": "genpipe-queue-timeout",
            "description": "a dispatched run no worker of its pool takes in time is Cancelled",
            "trigger": proactive("Scheduled", ["Pending", "Running", *FINAL],
                                 config.queue_timeout_seconds, DISPATCH_TAG),
            "actions": [{"type": "change-flow-run-state", "state": "CANCELLED", "name": NO_WORKER,
                         "message": f"no worker took it within {config.queue_timeout_seconds:g} s"}],
        },
    ]  # fmt: skip
    specs += [
        {"name": f"genpipe-budget-{stage}", "description": f"a run of {stage} past its timeout is cancelled",
         "trigger": proactive("Running", FINAL, config.timeout_of(stage), stage_tag(stage)),
         "actions": [{"type": "cancel-flow-run"}]}
        for stage in sorted(s for s, pool in config.pools.items() if pool != LOCAL)
    ]  # fmt: skip
    return [Automation.model_validate(spec) for spec in specs]


def same_automation(found: Any, wanted: Any) -> bool:
    """Equal but for the ids the server gives triggers and automations."""
    a, b = ((x.trigger.model_dump(exclude={"id"}), [y.model_dump() for y in x.actions]) for x in (found, wanted))  # fmt: skip
    return a == b


def deploy(project: Path, config: OrchestrationConfig) -> list[str]:
    """Pools, `prefect deploy --all`, automations, on the server PREFECT_API_URL names."""
    import yaml
    from prefect import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectNotFound
    from prefect.workers.process import ProcessWorker

    spec = yaml.safe_load((project / "prefect.yaml").read_text())
    made = []
    with get_client(sync_client=True) as client:
        for pool in sorted({d["work_pool"]["name"] for d in spec["deployments"]}):
            try:
                client.read_work_pool(pool)
            except ObjectNotFound:
                template = ProcessWorker.get_default_base_job_template()
                client.create_work_pool(
                    WorkPoolCreate(name=pool, type="process", base_job_template=template)
                )
                made.append(f"work pool {pool}")
        prefect = str(Path(sys.executable).parent / "prefect")
        # the pull steps' {{ $GENPIPE_COMMIT }} stay templates, filled per run on the worker
        env = {k: v for k, v in os.environ.items() if k not in (COMMIT_VAR, REMOTE_VAR)}
        done = subprocess.run([prefect, "--no-prompt", "deploy", "--all"], cwd=project, env=env,
                              capture_output=True, text=True)  # fmt: skip
        if done.returncode != 0:
            raise GenpipeError(
                f"`prefect deploy --all` failed in {project}:\n{done.stdout}{done.stderr}"
            )
        made.append("deployments of prefect.yaml")
    return made + [f"automation {name}" for name in install_automations(config)]


def install_automations(config: OrchestrationConfig) -> list[str]:
    """Replace the automations of these params on the server; returns their names."""
    from prefect import get_client

    wanted = expected_automations(config)
    with get_client(sync_client=True) as client:
        for automation in wanted:
            for old in client.read_automations_by_name(automation.name):
                client.delete_automation(old.id)
            automation.create()
    return [a.name for a in wanted]


def main() -> int:
    try:
        if not os.environ.get("PREFECT_API_URL"):
            raise GenpipeError("set PREFECT_API_URL to the team's Prefect server (eval \"$(make -s "
                               "services-env)\"); a temporary local API would vanish with this")  # fmt: skip
        project = project_root()
        for line in deploy(project, load_params(project / "params.yaml").orchestration):
            print(line)
    except GenpipeError as exc:
        print(f"genpipe: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
