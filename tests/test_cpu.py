"""CPU threads: cgroup quotas read from fake file trees, the share split, user overrides, and
the stage processes' OpenMP wait policy."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from genpipe import cpu, device
from genpipe.errors import GenpipeError
from genpipe.stages import _cli
from tests.params import params_with


def fake_tree(root: Path, cgroup: str, files: dict[str, str]) -> Path:
    """/proc/self/cgroup with `cgroup`'s lines, and `files` (paths under root) with their text."""
    (root / "proc/self").mkdir(parents=True)
    (root / "proc/self/cgroup").write_text(cgroup)
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


def test_v2_quota_is_quota_over_period(tmp_path: Path) -> None:
    root = fake_tree(tmp_path, "0::/\n", {"sys/fs/cgroup/cpu.max": "150000 100000\n"})
    assert cpu.cgroup_cpu_limit(root) == 1.5


def test_v2_max_is_no_limit(tmp_path: Path) -> None:
    root = fake_tree(tmp_path, "0::/\n", {"sys/fs/cgroup/cpu.max": "max 100000\n"})
    assert cpu.cgroup_cpu_limit(root) is None


def test_v2_the_tightest_level_of_the_hierarchy_wins(tmp_path: Path) -> None:
    root = fake_tree(
        tmp_path,
        "0::/ci.slice/job-7.scope\n",
        {
            "sys/fs/cgroup/cpu.max": "max 100000",
            "sys/fs/cgroup/ci.slice/cpu.max": "300000 100000",
            "sys/fs/cgroup/ci.slice/job-7.scope/cpu.max": "max 100000",
        },
    )
    assert cpu.cgroup_cpu_limit(root) == 3.0


def test_v1_cfs_quota_and_period(tmp_path: Path) -> None:
    root = fake_tree(
        tmp_path,
        "12:memory:/docker/abc\n3:cpu,cpuacct:/docker/abc\n0::/\n",
        {
            # a container's view: its own cgroup is the mount's root, the host path is absent
            "sys/fs/cgroup/cpu/cpu.cfs_quota_us": "250000\n",
            "sys/fs/cgroup/cpu/cpu.cfs_period_us": "100000\n",
        },
    )
    assert cpu.cgroup_cpu_limit(root) == 2.5


def test_v1_minus_one_is_no_limit(tmp_path: Path) -> None:
    root = fake_tree(
        tmp_path,
        "1:cpu:/\n",
        {
            "sys/fs/cgroup/cpu/cpu.cfs_quota_us": "-1",
            "sys/fs/cgroup/cpu/cpu.cfs_period_us": "100000",
        },
    )
    assert cpu.cgroup_cpu_limit(root) is None


def test_no_cgroup_files_means_no_limit(tmp_path: Path) -> None:
    assert cpu.cgroup_cpu_limit(tmp_path) is None
    assert cpu.cgroup_cpu_limit(fake_tree(tmp_path, "0::/\n", {})) is None


def test_usable_cores_rounds_the_quota_down_and_keeps_one(tmp_path: Path) -> None:
    half = fake_tree(tmp_path / "a", "0::/\n", {"sys/fs/cgroup/cpu.max": "50000 100000"})
    assert cpu.usable_cores(half) == 1
    if len(os.sched_getaffinity(0)) >= 2:
        one_and_half = fake_tree(
            tmp_path / "b", "0::/\n", {"sys/fs/cgroup/cpu.max": "150000 100000"}
        )
        assert cpu.usable_cores(one_and_half) == 1


@pytest.mark.parametrize(
    ("cores", "share", "threads"), [(2, 1, 2), (2, 2, 1), (2, 3, 1), (16, 3, 5), (8, 2, 4)]
)
def test_the_cores_are_split_evenly_with_at_least_one_thread(
    cores: int, share: int, threads: int
) -> None:
    assert cpu.thread_count(0, cores, share) == threads


def test_a_requested_count_wins_over_the_split() -> None:
    assert cpu.thread_count(3, cores=2, share=4) == 3


def test_share_comes_from_the_environment() -> None:
    assert cpu.cpu_share({}) == 1
    assert cpu.cpu_share({cpu.SHARE_ENV: "3"}) == 3


@pytest.mark.parametrize("bad", ["0", "-2", "two", "1.5"])
def test_a_bad_share_names_the_variable(bad: str) -> None:
    with pytest.raises(GenpipeError, match=cpu.SHARE_ENV):
        cpu.cpu_share({cpu.SHARE_ENV: bad})


def test_omp_num_threads_from_the_user_is_left_to_torch() -> None:
    assert cpu.stage_threads(0, {"OMP_NUM_THREADS": "3"}) is None
    assert cpu.stage_threads(2, {"OMP_NUM_THREADS": "3"}) == 2  # runtime.cpu_threads wins


def test_stage_threads_divides_the_usable_cores() -> None:
    cores = cpu.usable_cores()
    assert cpu.stage_threads(0, {}) == cores
    assert cpu.stage_threads(0, {cpu.SHARE_ENV: str(cores)}) == 1


def test_share_env_multiplies_an_outer_share() -> None:
    assert cpu.share_env(3, {}) == {cpu.SHARE_ENV: "3"}
    assert cpu.share_env(3, {cpu.SHARE_ENV: "2"}) == {cpu.SHARE_ENV: "6"}


def test_device_cpu_threads_sets_and_restores_torch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    before = torch.get_num_threads()
    target = 1 if before != 1 else 2
    with device.cpu_threads(params_with({"runtime": {"cpu_threads": target}}).runtime) as n:
        assert n == target == torch.get_num_threads()
    assert torch.get_num_threads() == before


def test_pytest_xdist_workers_share_the_cores() -> None:
    """tests/conftest.py's pytest_configure, as a worker of `pytest -n N` sees it."""
    workers = os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    if workers is None:
        pytest.skip("not a pytest-xdist worker")
    assert cpu.cpu_share(os.environ) % int(workers) == 0
    assert torch.get_num_threads() == cpu.stage_threads(0) or "OMP_NUM_THREADS" in os.environ


def test_openmp_waits_passively_unless_the_user_chose() -> None:
    env: dict[str, str] = {}
    _cli.passive_wait(env, modules={})
    assert env == {"OMP_WAIT_POLICY": "PASSIVE"}
    for chosen in ({"OMP_WAIT_POLICY": "ACTIVE"}, {"GOMP_SPINCOUNT": "300000"}):
        env = dict(chosen)
        _cli.passive_wait(env, modules={})
        assert env == chosen


def test_no_wait_policy_once_torch_is_loaded() -> None:
    env: dict[str, str] = {}
    _cli.passive_wait(env, modules={"torch": torch})  # libgomp has read its environment already
    assert env == {}


def test_stage_processes_wait_passively() -> None:
    """The torch stages import torch only after _cli.run set the wait policy."""
    code = (
        "import os, sys\n"
        "from genpipe.stages import _cli, evaluate, train\n"
        "assert 'torch' not in sys.modules, 'a stage module imports torch at import time'\n"
        "_cli.run('probe', lambda: print(os.environ['OMP_WAIT_POLICY']))\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in _cli.WAIT_ENV}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "PASSIVE"
