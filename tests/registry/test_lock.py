"""The registry lock's failure modes on the per-test SQLite store: a crashed holder, a live one."""

from __future__ import annotations

import time

import pytest
from mlflow import MlflowClient

from genpipe.registry import mlflow_registry as reg
from genpipe.tracking import configure_mlflow


def test_stale_lock_is_broken_and_a_live_one_times_out_with_a_clear_error() -> None:
    configure_mlflow()
    client = MlflowClient()
    expired = {reg.OWNER_TAG: "crashed:1", reg.EXPIRES_TAG: str(time.time() - 1)}
    client.create_registered_model("m.lock", tags=expired)
    with reg.model_lock("m") as owner:
        assert client.get_registered_model("m.lock").tags[reg.OWNER_TAG] == owner
        held = r"'m\.lock' is held by another register run"
        with pytest.raises(reg.RegistryError, match=held), reg.model_lock("m", timeout=0.5):
            pass
    assert [m.name for m in client.search_registered_models()] == []  # released on exit
