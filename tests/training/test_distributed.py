"""Data-parallel training on CPU (gloo): N processes train the model one process trains.

Equivalence tolerance: with the same seed, 2 ranks on half a batch each and 1 process on the
whole batch compute the same sums in another order (the gradient all-reduce averages two
half-batch means where one process takes one mean; batch norm sums its statistics per rank).
float32 rounding of those sums leaves the weights 1e-8..1e-6 apart after a few Adam steps here;
the tests allow 1e-5, while a real difference (per-rank batch norm, per-rank noise) moves the
weights by 1e-3 and more.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from genpipe.training import distributed
from genpipe.training.distributed import GlobalBatchNorm2d, Ranks
from tests.params import section

TOLERANCE = 1e-5
STEPS = 8


def test_shards_cover_a_batch_once_and_differ_by_at_most_one_row() -> None:
    for world in (1, 2, 3, 5):
        for n in (1, 7, 16, 64):
            rows = [list(range(n))[Ranks(r, world, r).shard(n)] for r in range(world)]
            assert [i for part in rows for i in part] == list(range(n))
            assert max(map(len, rows)) - min(map(len, rows)) <= 1


def test_torchrun_commands_for_one_and_several_machines() -> None:
    one = section("runtime", distributed={"nproc_per_node": 2}).distributed
    argv = ["-m", "genpipe.stages.train", "--task", "gan"]
    command = distributed.torchrun_command(one, 0, argv)
    assert command[1:3] == ["-m", "torch.distributed.run"]
    assert "--standalone" in command and "--nproc-per-node=2" in command
    assert command[-4:] == argv[-4:]
    two = section("runtime", distributed={"nnodes": 2, "rdzv_endpoint": "node0:29500"}).distributed
    command = distributed.torchrun_command(two, 1, argv)
    assert {"--nnodes=2", "--node-rank=1", "--master-addr=node0", "--master-port=29500"} <= set(
        command
    )
    missing = section("runtime", distributed={"nnodes": 2}).distributed
    with pytest.raises(distributed.DistributedError, match="rdzv_endpoint is empty"):
        distributed.torchrun_command(missing, 0, argv)


def test_global_batch_norm_is_batch_norm_in_one_process() -> None:
    torch.manual_seed(0)
    plain = torch.nn.Sequential(torch.nn.BatchNorm2d(3))
    converted = distributed.global_batch_norm(torch.nn.Sequential(torch.nn.BatchNorm2d(3))).train()
    assert isinstance(converted[0], GlobalBatchNorm2d)
    x = torch.randn(4, 3, 5, 5)
    assert torch.equal(converted(x), plain.train()(x))
    assert torch.equal(converted[0].running_var, plain[0].running_var)


def _train(tmp: Path, prepared: Path, task: str, processes: int, where: str = "cpu") -> dict:
    out = tmp / f"{task}-{processes}.pt"
    module = ["-m", "tests.training.ddp_worker", task, str(prepared), str(out), str(STEPS), where]
    if processes == 1:
        command = [sys.executable, *module]
    else:
        run = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
        command = [*run, f"--nproc-per-node={processes}", "--max-restarts=0", *module]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return torch.load(out)


@pytest.mark.parametrize("task", ["vae", "gan"])
def test_two_ranks_with_half_batches_train_what_one_process_trains(
    task: str, digits_prepared: Path, tmp_path: Path
) -> None:
    single = _train(tmp_path, digits_prepared, task, 1)
    double = _train(tmp_path, digits_prepared, task, 2)
    assert single.keys() == double.keys()
    moved = 0.0
    for part, weights in single.items():
        for name, value in weights.items():
            if value.is_floating_point():
                gap = (value.float() - double[part][name].float()).abs().max().item()
                assert gap <= TOLERANCE, f"{part}.{name} differs by {gap:.2e}"
                moved = max(moved, value.abs().max().item())
    assert moved > 0  # the comparison saw real weights


def test_a_dead_rank_ends_the_job_with_the_cause(digits_prepared: Path, tmp_path: Path) -> None:
    """torchrun's agent stops every rank when one dies; the summary names the dead rank."""
    script = tmp_path / "die.py"
    script.write_text(
        "import os, signal, time, torch.distributed as dist\n"
        "dist.init_process_group('gloo')\n"
        "if dist.get_rank() == 1:\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
        "dist.barrier()\n"
    )
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    command += ["--nproc-per-node=2", "--max-restarts=0", str(script)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode != 0
    assert "exitcode  : -9" in done.stderr and "rank      : 1" in done.stderr


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (NCCL)")
@pytest.mark.parametrize("task", ["vae", "gan"])
def test_nccl_ranks_train_what_one_gpu_process_trains(
    task: str, digits_prepared: Path, tmp_path: Path
) -> None:
    processes = min(2, torch.cuda.device_count())
    if processes < 2:
        pytest.skip("needs two CUDA devices for two NCCL ranks")
    single = _train(tmp_path, digits_prepared, task, 1, "cuda")
    double = _train(tmp_path, digits_prepared, task, processes, "cuda")
    for part, weights in single.items():
        for name, value in weights.items():
            if value.is_floating_point():
                gap = (value.float() - double[part][name].float()).abs().max().item()
                assert gap <= 1e-3, f"{part}.{name} differs by {gap:.2e}"  # TF32/bf16 on GPU
