"""The documented way (docs.prefect.io/v3/advanced/detect-zombie-flows) to crash flow runs whose
heartbeats stop: after a heartbeat, expect another flow-run event within WITHIN seconds."""

import sys
from datetime import timedelta

from prefect.automations import Automation
from prefect.client.schemas.objects import StateType
from prefect.events.actions import ChangeFlowRunState
from prefect.events.schemas.automations import EventTrigger, Posture
from prefect.events.schemas.events import ResourceSpecification

within = int(sys.argv[1]) if len(sys.argv) > 1 else 90
Automation(
    name="crash-zombie-flow-runs",
    trigger=EventTrigger(
        after={"prefect.flow-run.heartbeat"},
        expect={"prefect.flow-run.*"},
        match=ResourceSpecification({"prefect.resource.id": ["prefect.flow-run.*"]}),
        for_each={"prefect.resource.id"},
        posture=Posture.Proactive,
        threshold=1,
        within=timedelta(seconds=within),
    ),
    actions=[
        ChangeFlowRunState(
            state=StateType.CRASHED, message="Flow run marked as crashed due to missing heartbeats."
        )
    ],
).create()
print("automation created, within", within)
