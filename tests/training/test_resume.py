"""Resume equivalence and determinism: a run stopped after epoch k and resumed ends with
exactly the weights of an uninterrupted run (CPU), and the same seed repeats itself."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from genpipe.training import checkpoint
from genpipe.training.run import TrainPaths, train
from tests.training.conftest import tiny_params


def _states(paths: TrainPaths) -> dict[str, torch.Tensor]:
    record = checkpoint.load(paths.checkpoints / "last.pt")
    flat: dict[str, torch.Tensor] = {}
    for part, state in record["state"].items():
        if part.startswith("opt"):
            for pid, slots in state["state"].items():
                flat.update({f"{part}.{pid}.{k}": v for k, v in slots.items()})
        else:
            flat.update({f"{part}.{k}": v for k, v in state.items()})
    return flat


def _assert_identical(a: TrainPaths, b: TrainPaths) -> None:
    sa, sb = _states(a), _states(b)
    assert sa.keys() == sb.keys()
    differing = [k for k in sa if not torch.equal(sa[k], sb[k])]
    assert not differing, f"tensors differ after resume: {differing[:5]}"


@pytest.mark.parametrize("model", ["vae", "gan"])
def test_killed_then_resumed_equals_uninterrupted(
    model: str, train_paths: Callable[[str], TrainPaths]
) -> None:
    params = tiny_params(train={"checkpoint_every": 2}, vae={"epochs": 4})
    straight = train_paths("straight")
    full = train(model, params, straight)
    assert full.finished

    crashed = train_paths("crashed")
    # Killed after epoch 3: the last checkpoint is from epoch 2, so epoch 3 is redone.
    partial = train(model, params, crashed, stop_after=3)
    assert not partial.finished and checkpoint.load(crashed.checkpoints / "last.pt")["epoch"] == 2
    resumed = train(
        model,
        tiny_params(train={"checkpoint_every": 2, "resume": True}, vae={"epochs": 4}),
        crashed,
    )
    assert resumed.finished and resumed.epoch == full.epoch
    assert resumed.run_id == partial.run_id  # the crashed MLflow run is continued
    _assert_identical(straight, crashed)
    assert resumed.metrics == full.metrics
    history = (crashed.plots.read_text()).splitlines()
    assert len(history) == 1 + full.epoch  # header + one row per epoch, no duplicates


def test_same_seed_same_weights_and_other_seed_differs(
    train_paths: Callable[[str], TrainPaths],
) -> None:
    params = tiny_params(vae={"epochs": 1})
    a, b, c = train_paths("a"), train_paths("b"), train_paths("c")
    train("vae", params, a)
    train("vae", params, b)
    _assert_identical(a, b)
    train("vae", tiny_params(vae={"epochs": 1}, train={"seed": 1}), c)
    assert not torch.equal(_states(a)["model.to_stats.weight"], _states(c)["model.to_stats.weight"])


def test_resume_refuses_a_changed_config(train_paths: Callable[[str], TrainPaths]) -> None:
    paths = train_paths("run")
    train("gan", tiny_params(gan={"epochs": 1}), paths)
    changed = tiny_params(gan={"epochs": 1, "lr": {"generator": 1e-3}}, train={"resume": True})
    with pytest.raises(checkpoint.ResumeError, match=r"gan\.lr\.generator=0\.0002.*0\.001"):
        train("gan", changed, paths)


def test_resume_refuses_a_corrupt_checkpoint(train_paths: Callable[[str], TrainPaths]) -> None:
    paths = train_paths("run")
    paths.checkpoints.mkdir(parents=True)
    (paths.checkpoints / "last.pt").write_bytes(b"not a zip")
    with pytest.raises(checkpoint.ResumeError, match=r"last\.pt: unreadable"):
        train("vae", tiny_params(train={"resume": True}), paths)
