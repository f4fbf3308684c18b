"""Process-wide switches for the length of a training run: TF32, glibc heap reuse.

They are set on entry and put back on exit, so a test or a benchmark that trains in-process
leaves the interpreter as it found it.
"""

from __future__ import annotations

import contextlib
import ctypes
import platform
from collections.abc import Iterator

import torch

from genpipe.device import Runtime

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

    glibc serves each block above its mmap threshold (32 MB at most; a 28x28 activation at batch
    256 is larger) with its own mmap, unmaps it on free and trims smaller freed memory back to
    the OS, so every step would fault its activations in again. With mmap off and trimming
    deferred, the next step reuses the blocks the last one freed; resident memory stays at the
    step's peak instead of dropping between steps. The heap is trimmed on exit.
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
def activated(runtime: Runtime) -> Iterator[None]:
    """Apply the switches (TF32, heap reuse) for the duration of training."""
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    if runtime.tf32:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    try:
        with cpu_heap_reuse() if runtime.device.type == "cpu" else contextlib.nullcontext():
            yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old
