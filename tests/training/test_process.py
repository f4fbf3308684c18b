"""Process-wide training switches: chosen thread counts, and everything restored on exit."""

from __future__ import annotations

import torch

from genpipe import device
from genpipe.training import process
from tests.params import params_with


def test_cpu_threads_auto_uses_one_thread_for_small_images() -> None:
    assert process.cpu_threads(0, (1, 8, 8), default=2) == 1
    assert process.cpu_threads(0, (1, 28, 28), default=2) == 2
    assert process.cpu_threads(3, (1, 8, 8), default=2) == 3


def test_activated_sets_and_restores_the_thread_count() -> None:
    before = torch.get_num_threads()
    target = 1 if before != 1 else 2
    runtime = device.resolve(
        params_with({"runtime": {"device": "cpu"}}).runtime, device.Available(False, False, False)
    )
    with process.activated(runtime, threads=target):
        assert torch.get_num_threads() == target
    assert torch.get_num_threads() == before
