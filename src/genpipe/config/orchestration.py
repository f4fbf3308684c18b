"""Stage policy for the Prefect flow (`orchestration:` in params.yaml): timeouts, retries, the gate
stage, and which work pool runs each stage.

No stage reads this section, so changing it reruns nothing. The stage graph itself lives only in
dvc.yaml; keys here name dvc.yaml stages. `pools` maps a stage to the Prefect work pool whose
workers run it (`local`: the flow's own process, the controller); with `dispatch` off every stage
runs locally whatever the map says. prefect.yaml declares a `genpipe-stage` and a
`genpipe-sweep-member` deployment per pool (tests/pipelines/test_orchestration.py checks they agree).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, PositiveFloat, ValidationInfo, field_validator

from genpipe.config.base import Section

LOCAL = "local"  # the pool name that means "the controller: the flow's own checkout"
DEFAULT = "default"  # the timeouts key for every stage not named there

PoolName = Annotated[str, Field(pattern=r"^[a-z][a-z0-9-]{0,62}$")]
StageName = Annotated[str, Field(pattern=r"^[A-Za-z0-9_@.-]+$")]


class OrchestrationConfig(Section):
    """`orchestration:` how the flow runs dvc.yaml's stages, and where."""

    gate: StageName  # the stage whose failure stops the flow before training (ValidationFailed)
    timeouts: dict[StageName, PositiveFloat]  # seconds per stage run; `default` for the others
    retries: dict[StageName, Annotated[int, Field(ge=0, le=10)]]  # reruns after a failure
    retry_delay_seconds: float = Field(ge=0)  # first retry's delay, doubled for each next one
    dispatch: bool  # off: every stage runs in the flow's checkout
    pools: dict[StageName, PoolName]  # dvc.yaml stage -> work pool, or `local` (the controller)
    sweep_pool: PoolName  # where a dispatched sweep member runs, whole (one `dvc exp run`)
    git_remote: str = Field(pattern=r"^[A-Za-z0-9._-]+$")  # where workers fetch the commit from
    lost_worker_retries: int = Field(ge=0, le=5)  # new stage runs after a worker is lost
    queue_timeout_seconds: PositiveFloat  # a stage no worker of its pool takes within this fails
    worker_poll_seconds: PositiveFloat  # PREFECT_WORKER_QUERY_SECONDS of `make worker`
    heartbeat_seconds: int = Field(ge=30)  # PREFECT_FLOWS_HEARTBEAT_FREQUENCY (Prefect: >= 30)
    zombie_after_seconds: int  # no heartbeat for this long: the stage run is marked Crashed
    worker_commits_kept: int = Field(ge=1)  # commit checkouts a worker keeps (newest used)

    @field_validator("timeouts")
    @classmethod
    def _has_default(cls, value: dict[str, float]) -> dict[str, float]:
        if DEFAULT not in value:
            raise ValueError(f"needs a `{DEFAULT}` entry, the timeout of every other stage")
        return value

    @field_validator("zombie_after_seconds")
    @classmethod
    def _zombie_window(cls, value: int, info: ValidationInfo) -> int:
        heartbeat = info.data.get("heartbeat_seconds")
        if heartbeat is not None and value < 2 * heartbeat:
            raise ValueError(
                f"must be at least twice heartbeat_seconds ({heartbeat}), or a heartbeat that "
                "comes late marks a healthy stage run Crashed"
            )
        return value

    def timeout_of(self, stage: str) -> float:
        return self.timeouts.get(stage, self.timeouts[DEFAULT])

    def pool_of(self, stage: str) -> str:
        """The pool a stage runs on; a stage missing from the map is an error naming the key."""
        try:
            return self.pools[stage]
        except KeyError:
            raise KeyError(
                f"orchestration.pools has no entry for stage {stage!r}: add "
                f"`{stage}: <work pool>` (or `{stage}: {LOCAL}`) to params.yaml"
            ) from None

    def remote_pools(self) -> list[str]:
        """Every work pool the map and sweep_pool name, `local` aside, sorted."""
        return sorted({p for p in [*self.pools.values(), self.sweep_pool] if p != LOCAL})
