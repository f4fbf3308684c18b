"""Pure pieces of pipelines.dvc_runner: how concurrent stages share the CPU."""

from __future__ import annotations

import pytest

from pipelines.dvc_runner import shared_cpu_env, usable_cores


@pytest.mark.parametrize(
    ("n_tasks", "cores", "threads"),
    [(3, 2, "1"), (3, 8, "2"), (2, 8, "4"), (1, 2, "2"), (3, 1, "1"), (0, 4, "4")],
)
def test_cores_are_split_evenly_and_never_below_one(n_tasks: int, cores: int, threads: str) -> None:
    assert shared_cpu_env(n_tasks, cores, {}) == {"OMP_NUM_THREADS": threads}


def test_a_thread_count_the_user_set_wins() -> None:
    assert shared_cpu_env(3, 16, {"OMP_NUM_THREADS": "6"}) == {}


def test_usable_cores_is_positive_and_at_most_the_machine() -> None:
    import os

    assert 1 <= usable_cores() <= (os.cpu_count() or 1)
