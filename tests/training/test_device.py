"""Device and precision selection, decided from fake hardware so it runs on any CPU box."""

from __future__ import annotations

import json
import resource
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from genpipe.config import TrainConfig
from genpipe.training import device
from genpipe.training.device import Available, DeviceError

CPU_ONLY = Available(cuda=False, mps=False, bf16=False)
MAC = Available(cuda=False, mps=True, bf16=False)
AMPERE = Available(cuda=True, mps=False, bf16=True)
OLD_GPU = Available(cuda=True, mps=False, bf16=False)


@pytest.mark.parametrize(
    ("available", "expected"),
    [(CPU_ONLY, "cpu"), (MAC, "mps"), (AMPERE, "cuda"), (OLD_GPU, "cuda")],
)
def test_auto_prefers_cuda_then_mps_then_cpu(available: Available, expected: str) -> None:
    assert device.select_device("auto", available).type == expected


@pytest.mark.parametrize(
    ("requested", "available"), [("cuda", CPU_ONLY), ("cuda", MAC), ("mps", AMPERE)]
)
def test_unavailable_explicit_device_is_a_clear_error(requested: str, available: Available) -> None:
    with pytest.raises(DeviceError, match=f"train.device is '{requested}'"):
        device.select_device(requested, available)


def test_auto_precision_is_bf16_only_on_capable_cuda() -> None:
    cuda, cpu, mps = torch.device("cuda"), torch.device("cpu"), torch.device("mps")
    assert device.select_precision("auto", cuda, AMPERE) is torch.bfloat16
    assert device.select_precision("auto", cuda, OLD_GPU) is None
    assert device.select_precision("auto", cpu, AMPERE) is None
    assert device.select_precision("auto", mps, MAC) is None
    assert device.select_precision("fp32", cuda, AMPERE) is None
    assert device.select_precision("bf16", cpu, CPU_ONLY) is torch.bfloat16
    with pytest.raises(DeviceError, match="lacks bf16"):
        device.select_precision("bf16", cuda, OLD_GPU)


def test_resolve_turns_on_tf32_and_compile_only_where_asked() -> None:
    gpu = device.resolve(TrainConfig(compile=True), AMPERE)
    assert (gpu.name, gpu.amp_dtype, gpu.tf32, gpu.compile) == ("cuda", torch.bfloat16, True, True)
    cpu = device.resolve(TrainConfig(), CPU_ONLY)
    assert (cpu.name, cpu.amp_dtype, cpu.tf32, cpu.compile) == ("cpu", None, False, False)


def test_cpu_threads_auto_uses_one_thread_for_small_images() -> None:
    assert device.cpu_threads(0, (1, 8, 8), default=2) == 1
    assert device.cpu_threads(0, (1, 28, 28), default=2) == 2
    assert device.cpu_threads(3, (1, 8, 8), default=2) == 3


def test_activated_restores_process_settings() -> None:
    before = torch.get_num_threads()
    runtime = device.resolve(TrainConfig(device="cpu"), CPU_ONLY)
    with device.activated(runtime, threads=1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


def test_real_detection_on_this_machine_resolves() -> None:
    runtime = device.resolve(TrainConfig())
    assert runtime.device.type in {"cpu", "cuda", "mps"}
    x = torch.ones(2, device=runtime.device)
    with runtime.autocast():
        assert float((x * 2).sum()) == 4.0


def _thp_always() -> bool:
    try:
        return "[always]" in Path("/sys/kernel/mm/transparent_hugepage/enabled").read_text()
    except OSError:
        return False


# A step that allocates and frees 4 x 40 MB, counted in a fresh interpreter: glibc's state is
# process-wide, and earlier tests' trainings have already switched it.
_FAULTS = """
import json, resource, torch
from genpipe.training import device

def step():
    blocks = [torch.empty(10 * 2**20).fill_(1.0) for _ in range(4)]
    assert all(float(b[-1]) == 1.0 for b in blocks)

def faults_per_step(steps=6):
    # Warm-up: after the switch the heap takes a few steps to grow to the size the step needs
    # (2-3 steps here, depending on where small objects landed); count only the steady state.
    for _ in range(steps):
        step()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(steps):
        step()
    return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / steps

default = faults_per_step()
with device.cpu_heap_reuse() as applied:
    reused = faults_per_step()
print(json.dumps({"default": default, "reused": reused, "applied": applied}))
"""


@pytest.mark.skipif(_thp_always(), reason="huge pages hide the page faults this test counts")
def test_cpu_heap_reuse_stops_refaulting_large_blocks_every_step() -> None:
    """By default glibc mmaps and unmaps each 40 MB block, so every step faults 160 MB in
    again; inside cpu_heap_reuse the freed blocks are reused."""
    out = subprocess.run(
        [sys.executable, "-c", _FAULTS], capture_output=True, text=True, check=True, timeout=120
    )
    counts = json.loads(out.stdout.strip().splitlines()[-1])
    if not counts["applied"]:
        pytest.skip("not glibc: the switch does not apply")
    pages_per_step = 4 * 40 * 2**20 / resource.getpagesize()
    assert counts["default"] > 0.8 * pages_per_step, counts  # really refaults every block
    assert counts["reused"] < 0.1 * counts["default"], counts  # 41k -> 0 here
