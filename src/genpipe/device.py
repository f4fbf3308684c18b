"""Device, precision and CPU threads: decided once, from `runtime` plus what the machine offers.

Training, evaluation and serving all resolve their device here. The choice is a pure function of
(requested, available) so it can be unit-tested on a CPU box; `detect()` is the only place that
asks torch what hardware exists. How many threads torch computes with is genpipe.cpu's answer,
applied here for the length of a stage's compute.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from genpipe import cpu
from genpipe.config import RuntimeConfig
from genpipe.errors import GenpipeError

log = logging.getLogger(__name__)


class DeviceError(GenpipeError):
    """The configured runtime.device is not available on this machine."""


@dataclass(frozen=True)
class Available:
    cuda: bool
    mps: bool
    bf16: bool  # CUDA device with native bf16 (Ampere or newer)


@dataclass(frozen=True)
class Runtime:
    """Where and how to compute: the result of device selection."""

    device: torch.device
    amp_dtype: torch.dtype | None  # autocast dtype, None = plain fp32
    tf32: bool
    compile: bool
    channels_last: bool

    @property
    def name(self) -> str:
        return self.device.type

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)


def detect() -> Available:
    cuda = torch.cuda.is_available()
    mps = bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())
    bf16 = cuda and torch.cuda.is_bf16_supported()
    return Available(cuda=cuda, mps=mps, bf16=bf16)


def select_device(requested: str, available: Available) -> torch.device:
    """`auto` picks CUDA, then MPS, then CPU; an explicit unavailable device is an error."""
    if requested == "auto":
        if available.cuda:
            return torch.device("cuda")
        if available.mps:
            return torch.device("mps")
        return torch.device("cpu")
    if requested == "cuda" and not available.cuda:
        raise DeviceError(
            "runtime.device is 'cuda' but no CUDA device is visible; use 'auto' or 'cpu'"
        )
    if requested == "mps" and not available.mps:
        raise DeviceError("runtime.device is 'mps' but MPS is not available; use 'auto' or 'cpu'")
    return torch.device(requested)


def select_precision(
    requested: str, device: torch.device, available: Available
) -> torch.dtype | None:
    """bf16 autocast on CUDA (when supported) under `auto`; fp32 on CPU and MPS."""
    if requested == "fp32":
        return None
    if requested == "bf16":
        if device.type == "cuda" and not available.bf16:
            raise DeviceError(
                "runtime.precision is 'bf16' but this CUDA device lacks bf16; use 'auto'"
            )
        if device.type == "mps":
            raise DeviceError(
                "runtime.precision 'bf16' is not supported on MPS; use 'auto' or 'fp32'"
            )
        return torch.bfloat16
    return torch.bfloat16 if device.type == "cuda" and available.bf16 else None


def resolve(config: RuntimeConfig, available: Available | None = None) -> Runtime:
    """Turn the `runtime` section into a Runtime (pure, given `available`)."""
    available = available or detect()
    device = select_device(config.device, available)
    return Runtime(
        device=device,
        amp_dtype=select_precision(config.precision, device, available),
        tf32=device.type == "cuda",
        compile=config.compile,
        channels_last=device.type in ("cuda", "cpu"),
    )


def prepare_module(module: torch.nn.Module, runtime: Runtime) -> torch.nn.Module:
    """Move to the device, in channels_last where convolutions run faster that way."""
    module = module.to(runtime.device)
    if runtime.channels_last:
        module = module.to(memory_format=torch.channels_last)
    return module


@contextlib.contextmanager
def cpu_threads(config: RuntimeConfig) -> Iterator[int]:
    """torch's intra-op threads while a stage computes (genpipe.cpu.stage_threads); the count
    before is put back on exit, so a stage run in-process (tests) leaves the interpreter as is.

    Inter-op threads are left alone: they serve torch.jit.fork, which genpipe does not use.
    """
    before = torch.get_num_threads()
    threads = cpu.stage_threads(config.cpu_threads)
    if threads is not None:
        torch.set_num_threads(threads)
    log.info("torch computes with %d CPU thread(s)", torch.get_num_threads())
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(before)
