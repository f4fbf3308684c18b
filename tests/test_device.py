"""Device and precision selection, decided from fake hardware so it runs on any CPU box."""

from __future__ import annotations

import pytest
import torch

from genpipe import device
from genpipe.device import Available, DeviceError
from tests.params import params_with

CPU_ONLY = Available(cuda=False, mps=False, bf16=False)
MAC = Available(cuda=False, mps=True, bf16=False)
AMPERE = Available(cuda=True, mps=False, bf16=True)
OLD_GPU = Available(cuda=True, mps=False, bf16=False)


def runtime_config(**values: object):
    return params_with({"runtime": values}).runtime


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
    with pytest.raises(DeviceError, match=f"runtime.device is '{requested}'"):
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
    with pytest.raises(DeviceError, match="MPS"):
        device.select_precision("bf16", mps, MAC)


def test_resolve_turns_on_tf32_and_compile_only_where_asked() -> None:
    gpu = device.resolve(runtime_config(compile=True), AMPERE)
    assert (gpu.name, gpu.amp_dtype, gpu.tf32, gpu.compile) == ("cuda", torch.bfloat16, True, True)
    cpu = device.resolve(runtime_config(compile=False), CPU_ONLY)
    assert (cpu.name, cpu.amp_dtype, cpu.tf32, cpu.compile) == ("cpu", None, False, False)
    mac = device.resolve(runtime_config(), MAC)
    assert (mac.name, mac.channels_last) == ("mps", False)


def test_autocast_is_a_no_op_in_fp32_and_bf16_under_bf16() -> None:
    x = torch.ones(2, 2)
    fp32 = device.resolve(runtime_config(device="cpu", precision="fp32"), CPU_ONLY)
    with fp32.autocast():
        assert (x @ x).dtype is torch.float32
    bf16 = device.resolve(runtime_config(device="cpu", precision="bf16"), CPU_ONLY)
    with bf16.autocast():
        assert (x @ x).dtype is torch.bfloat16
