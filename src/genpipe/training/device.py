"""Device and precision selection: decided once, from config plus what the machine offers.

The choice is a pure function of (requested, available) so it can be unit-tested on a CPU box;
`detect()` is the only place that asks torch what hardware exists.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import platform
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from genpipe.config import TrainConfig
from genpipe.errors import GenpipeError

log = logging.getLogger(__name__)


class DeviceError(GenpipeError):
    """The configured train.device is not available on this machine."""


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
            "train.device is 'cuda' but no CUDA device is visible; use 'auto' or 'cpu'"
        )
    if requested == "mps" and not available.mps:
        raise DeviceError("train.device is 'mps' but MPS is not available; use 'auto' or 'cpu'")
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
                "train.precision is 'bf16' but this CUDA device lacks bf16; use 'auto'"
            )
        if device.type == "mps":
            raise DeviceError(
                "train.precision 'bf16' is not supported on MPS; use 'auto' or 'fp32'"
            )
        return torch.bfloat16
    return torch.bfloat16 if device.type == "cuda" and available.bf16 else None


def resolve(config: TrainConfig, available: Available | None = None) -> Runtime:
    """Turn the `train` section into a Runtime (pure, given `available`)."""
    available = available or detect()
    device = select_device(config.device, available)
    return Runtime(
        device=device,
        amp_dtype=select_precision(config.precision, device, available),
        tf32=device.type == "cuda",
        compile=config.compile,
        channels_last=device.type in ("cuda", "cpu"),
    )


def cpu_threads(requested: int, image_shape: tuple[int, ...], default: int) -> int:
    """0 = auto: one thread for small images (overhead-bound), else torch's default."""
    if requested > 0:
        return requested
    return 1 if image_shape[-1] * image_shape[-2] <= 16 * 16 else default


# glibc's mallopt(3) parameters. Its thresholds are dynamic until first set, and setting one
# ends that, so the exit values are where they settle for a workload of large tensors: the mmap
# threshold grows to its 32 MB ceiling and the trim threshold follows at twice that.
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4
_SETTLED_TRIM_THRESHOLD, _DEFAULT_MMAP_MAX = 64 * 1024 * 1024, 65536


def _glibc() -> ctypes.CDLL | None:
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:
        return None


@contextlib.contextmanager
def cpu_heap_reuse() -> Iterator[bool]:
    """Keep freed large blocks in glibc's heap for reuse while training on the CPU.

    glibc serves each block over 32 MB (a 28x28 activation at batch 256 is 25-50 MB) with its own
    mmap and unmaps it on free, and trims smaller freed memory back to the OS, so every step
    faults its activations in again: about 100k page faults (400 MB) per 28x28 GAN step, 15% of
    the step time. With mmap off and trimming at 2 GB, freed blocks stay in the heap and the next
    step reuses most of them. Measured on 28x28 at batch 256 (benchmarks/train_throughput.py and
    the README): steps 14-16% faster; resident memory levels off 5-11% higher, since freed
    blocks stay resident (it stayed flat over 150 GAN steps). The heap is trimmed on exit.
    Yields whether the switch applied (False off glibc: macOS, musl).
    """
    libc = _glibc()
    if libc is None:
        yield False
        return
    libc.mallopt(_M_MMAP_MAX, 0)
    libc.mallopt(_M_TRIM_THRESHOLD, 2**31 - 1)
    try:
        yield True
    finally:
        libc.mallopt(_M_MMAP_MAX, _DEFAULT_MMAP_MAX)
        libc.mallopt(_M_TRIM_THRESHOLD, _SETTLED_TRIM_THRESHOLD)
        libc.malloc_trim(0)


@contextlib.contextmanager
def activated(runtime: Runtime, threads: int | None = None) -> Iterator[None]:
    """Apply process-wide switches (TF32, CPU threads, heap reuse) for the duration of training."""
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    old_threads = torch.get_num_threads()
    if runtime.tf32:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    cpu = runtime.device.type == "cpu"
    if threads is not None and cpu:
        torch.set_num_threads(threads)
    try:
        with cpu_heap_reuse() if cpu else contextlib.nullcontext():
            yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old
        torch.set_num_threads(old_threads)


def prepare_module(module: torch.nn.Module, runtime: Runtime) -> torch.nn.Module:
    """Move to the device, in channels_last where convolutions run faster that way."""
    module = module.to(runtime.device)
    if runtime.channels_last:
        module = module.to(memory_format=torch.channels_last)
    return module


def adam(params, lr: float, betas: tuple[float, float], runtime: Runtime) -> torch.optim.Adam:
    """Adam with one fused kernel per step (CUDA and CPU), else the multi-tensor path."""
    fused = runtime.device.type in ("cuda", "cpu")
    return torch.optim.Adam(
        params, lr=lr, betas=betas, fused=fused, foreach=None if fused else True
    )
