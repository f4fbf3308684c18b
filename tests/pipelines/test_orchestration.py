"""Stage policy and dispatch declarations without a server: params.yaml's `orchestration:`, the
deployments of prefect.yaml, the automations, and how a dispatched run's end is read."""

from __future__ import annotations

from datetime import timedelta
from types import SimpleNamespace

import pytest
import yaml
from prefect.client.schemas.objects import StateType
from prefect.utilities.importtools import import_object

from genpipe.config import ConfigError, Params
from pipelines.deploy import NO_WORKER, expected_automations
from pipelines.dispatch import (
    STAGE_FLOW,
    WorkerLost,
    raise_unless_completed,
    retry_condition,
    stage_tag,
)
from pipelines.dvc_stage import StageFailed
from pipelines.plan import PlanError, check_policy
from pipelines.sweep_member import MEMBER_FLOW
from tests.conftest import REPO, dvc_stages
from tests.params import merge, raw_params

CONFIG = Params.from_dict(raw_params()).orchestration

STAGES = dvc_stages()


def test_prefect_yaml_deploys_the_stage_flow_on_every_pool_of_params_yaml() -> None:
    spec = yaml.safe_load((REPO / "prefect.yaml").read_text())
    flow = "pipelines.stage_flow:genpipe_stage"
    stage_deployments = {d["name"]: d for d in spec["deployments"] if d["entrypoint"] == flow}
    assert sorted(stage_deployments) == CONFIG.remote_pools()
    for name, deployment in stage_deployments.items():
        assert deployment["work_pool"]["name"] == name  # genpipe-stage/<pool> runs on <pool>
        [step] = deployment["pull"]
        assert step["pipelines.stage_flow.commit_checkout"] == {
            "repository": "{{ $GENPIPE_CODE_REMOTE }}",
            "commit": "{{ $GENPIPE_COMMIT }}",
        }
    assert import_object(flow).name == STAGE_FLOW
    assert callable(import_object("pipelines.stage_flow.commit_checkout"))


def test_prefect_yaml_deploys_the_sweep_member_flow_on_every_pool_too() -> None:
    spec = yaml.safe_load((REPO / "prefect.yaml").read_text())
    flow = "pipelines.sweep_member:genpipe_sweep_member"
    members = {d["name"]: d for d in spec["deployments"] if d["entrypoint"] == flow}
    assert sorted(members) == CONFIG.remote_pools() and CONFIG.sweep_pool in members
    stage_step = next(d for d in spec["deployments"] if d["name"] == "genpipe-cpu")["pull"]
    for name, deployment in members.items():
        assert deployment["work_pool"]["name"] == name
        assert deployment["pull"] == stage_step  # the sweep's commit, as for a stage
    assert import_object(flow).name == MEMBER_FLOW


def test_the_policy_names_dvc_yaml_stages_only() -> None:
    check_policy(CONFIG, STAGES, dispatching=True)
    with pytest.raises(PlanError, match=r"orchestration.timeouts names \['train_vea'\]"):
        check_policy(CONFIG.model_copy(update={"timeouts": {"default": 1, "train_vea": 2}}),
                     STAGES, dispatching=False)  # fmt: skip
    added = [*STAGES, "publish"]  # a stage dvc.yaml gains needs a pool only to dispatch
    check_policy(CONFIG, added, dispatching=False)
    with pytest.raises(PlanError, match=r"orchestration.pools has no pool for \['publish'\]"):
        check_policy(CONFIG, added, dispatching=True)


def test_orchestration_config_names_bad_keys() -> None:
    raw = raw_params()
    with pytest.raises(ConfigError, match=r"orchestration.zombie_after_seconds"):
        Params.from_dict(merge(raw, {"orchestration": {"zombie_after_seconds": 45}}))
    with pytest.raises(ConfigError, match=r"orchestration.pools.train_vae"):
        Params.from_dict(merge(raw, {"orchestration": {"pools": {"train_vae": "GPU pool"}}}))
    no_default = {**raw, "orchestration": {**raw["orchestration"], "timeouts": {"download": 5}}}
    with pytest.raises(ConfigError, match=r"orchestration.timeouts: .*needs a `default` entry"):
        Params.from_dict(no_default)
    assert CONFIG.timeout_of("train_gan") == CONFIG.timeouts["default"]
    assert CONFIG.timeout_of("download") == CONFIG.timeouts["download"]
    with pytest.raises(KeyError, match=r"orchestration.pools has no entry for stage 'extra'"):
        CONFIG.pool_of("extra")


def test_automations_follow_the_params() -> None:
    found = {a.name: a for a in expected_automations(CONFIG)}
    remote = sorted(s for s, pool in CONFIG.pools.items() if pool != "local")
    assert set(found) == {"genpipe-zombie", "genpipe-queue-timeout"} | {
        f"genpipe-budget-{s}" for s in remote
    }
    assert found["genpipe-zombie"].trigger.within == timedelta(seconds=CONFIG.zombie_after_seconds)
    assert found["genpipe-zombie"].actions[0].state == StateType.CRASHED
    queue = found["genpipe-queue-timeout"]
    assert queue.trigger.within == timedelta(seconds=CONFIG.queue_timeout_seconds)
    assert queue.actions[0].name == NO_WORKER
    budget = found["genpipe-budget-train_gan"]
    assert budget.trigger.within == timedelta(seconds=CONFIG.timeout_of("train_gan"))
    assert budget.trigger.match_related.model_dump()["prefect.resource.id"] == (
        f"prefect.tag.{stage_tag('train_gan')}"
    )


def run(kind: StateType, name: str = "", message: str = "") -> SimpleNamespace:
    return SimpleNamespace(state=SimpleNamespace(
        type=kind, name=name or kind.value.title(), message=message,
        is_final=lambda: kind not in (StateType.RUNNING, StateType.SCHEDULED, StateType.PENDING),
    ))  # fmt: skip


def test_a_dispatched_run_is_read_from_its_final_state() -> None:
    def read(child: SimpleNamespace) -> None:
        raise_unless_completed(child, "stage s on host h", "s", "genpipe-gpu", CONFIG)

    read(run(StateType.COMPLETED))
    with pytest.raises(WorkerLost, match="no heartbeat"):
        read(run(StateType.CRASHED, message="no heartbeat for 90 s"))
    with pytest.raises(StageFailed, match=r"no worker of pool genpipe-gpu.*make worker POOL"):
        read(run(StateType.CANCELLED, name=NO_WORKER))
    with pytest.raises(StageFailed, match=r"cancelled.*orchestration.timeouts"):
        read(run(StateType.CANCELLED))
    with pytest.raises(StageFailed, match="failed: exit 1"):
        read(run(StateType.FAILED, message="exit 1"))
    member = {"label": "sweep member seed-1", "budget": "60 s (the sweep's member timeout)"}
    with pytest.raises(StageFailed, match=r"^sweep member seed-1: no worker of pool genpipe-gpu"):
        raise_unless_completed(run(StateType.CANCELLED, name=NO_WORKER), "w", "seed-1",
                               "genpipe-gpu", CONFIG, **member)  # fmt: skip
    with pytest.raises(StageFailed, match=r"past its budget, 60 s \(the sweep's member timeout\)"):
        raise_unless_completed(run(StateType.CANCELLED), "w", "seed-1", "genpipe-gpu", CONFIG,
                               **member)  # fmt: skip
    with pytest.raises(StageFailed, match="make deploy-stages"):
        read(run(StateType.RUNNING))


def test_a_lost_worker_and_a_retried_stage_are_retried_as_often_as_the_policy_says() -> None:
    def state(exc: BaseException) -> SimpleNamespace:
        def result() -> None:
            raise exc

        return SimpleNamespace(result=result)

    lost, failed = state(WorkerLost("s", "crashed")), state(StageFailed("s", "exit 1"))
    plain, download = retry_condition("s", 0, 1), retry_condition("download", 3, 1)
    first, third = SimpleNamespace(run_count=1), SimpleNamespace(run_count=3)
    assert plain(None, first, lost) and not plain(None, first, failed)
    assert not plain(None, third, lost)
    assert download(None, third, failed) and download(None, first, lost)
