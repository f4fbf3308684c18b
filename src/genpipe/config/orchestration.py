"""Config of where the Prefect flow runs each stage (`orchestration:` in params.yaml).

No stage reads this section: it places stages on hosts and bounds how long the flow waits for
them, so no DVC stage depends on it. `pools` is the one map from a dvc.yaml stage to the Prefect
work pool whose workers run it (`local`: the flow's own process, the controller). With `dispatch`
off, every stage runs locally whatever the map says. There are no defaults here: a missing key is
an error that names it.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, PositiveFloat, ValidationInfo, field_validator

from genpipe.config.base import Section

LOCAL = "local"  # the pool name that means "the controller: the flow's own checkout"

PoolName = Annotated[str, Field(pattern=r"^[a-z][a-z0-9-]{0,62}$")]


class OrchestrationConfig(Section):
    """`orchestration:` which stages go to which work pool, and the flow's patience."""

    dispatch: bool  # off: every stage runs in the flow's checkout, as before
    pools: dict[str, PoolName]  # dvc.yaml stage -> work pool, or `local` (the controller)
    git_remote: str = Field(pattern=r"^[A-Za-z0-9._-]+$")  # the controller checkout's git remote
    # that workers clone the flow run's commit from
    queue_timeout_seconds: PositiveFloat  # a stage no worker of its pool takes within this fails
    retries: int = Field(ge=0, le=5)  # new child runs after a worker is lost (crash, no heartbeat)
    poll_seconds: PositiveFloat  # how often the flow reads a dispatched stage's state
    worker_poll_seconds: PositiveFloat  # PREFECT_WORKER_QUERY_SECONDS of `make worker`
    heartbeat_seconds: int = Field(ge=30)  # PREFECT_FLOWS_HEARTBEAT_FREQUENCY (Prefect: >= 30)
    zombie_after_seconds: int  # no heartbeat for this long: the stage run is marked Crashed

    @field_validator("pools")
    @classmethod
    def _stage_names(cls, value: dict[str, str]) -> dict[str, str]:
        bad = [s for s in value if not s or not s.replace("_", "a").replace("@", "a").isalnum()]
        if bad:
            raise ValueError(f"stage names {bad} are not dvc.yaml stage names")
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
        """Every work pool the map names, `local` aside, sorted."""
        return sorted({p for p in self.pools.values() if p != LOCAL})
