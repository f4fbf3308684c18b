"""genpipe.sweeps.plan: DVC's sweep syntax expanded by DVC's parser; stable member names."""

from __future__ import annotations

import subprocess

import pytest

from genpipe.sweeps.plan import Member, SweepError, expand, member_name, sample, without_seed


def test_a_grid_expands_as_dvc_exp_run_queue_does() -> None:
    assert expand("train.seed=range(0,3) vae.prior_components=16,32") == [
        ("train.seed=0", "vae.prior_components=16"),
        ("train.seed=0", "vae.prior_components=32"),
        ("train.seed=1", "vae.prior_components=16"),
        ("train.seed=1", "vae.prior_components=32"),
        ("train.seed=2", "vae.prior_components=16"),
        ("train.seed=2", "vae.prior_components=32"),
    ]


def test_grids_separated_by_semicolons_are_listed_one_after_another_each_member_once() -> None:
    assert expand("vae.prior=standard; vae.prior_components=5,10; vae.prior=standard") == [
        ("vae.prior=standard",),
        ("vae.prior_components=5",),
        ("vae.prior_components=10",),
    ]
    assert expand(["train.seed=choice(3,4)"]) == [("train.seed=3",), ("train.seed=4",)]


@pytest.mark.parametrize(
    "spec, says",
    [
        ("train.seed", "key=value"),
        ("train.seed=interval(0,1)", "DVC cannot expand"),
        ("train.seed=range(0,", "DVC cannot expand"),
        (" ; ", "empty"),
    ],
)
def test_what_dvc_cannot_expand_is_a_clear_error(spec: str, says: str) -> None:
    with pytest.raises(SweepError, match=says):
        expand(spec)


def test_names_are_git_refs_that_read_like_the_overrides_and_change_with_what_is_computed() -> None:
    params = {"train": {"seed": 1}}
    name = member_name(("train.seed=1", "data.download.mirrors=[http://h:1/]"), "decide", params)
    assert name.startswith("seed-1_mirrors-http-h-1-")
    done = subprocess.run(["git", "check-ref-format", f"refs/exps/{name}"], check=False)
    assert done.returncode == 0, name
    again = member_name(("train.seed=1", "data.download.mirrors=[http://h:1/]"), "decide", params)
    assert again == name
    assert member_name(("train.seed=1",), "score_val@vae", params) != member_name(
        ("train.seed=1",), "decide", params
    )
    assert member_name(("train.seed=1",), "decide", {"train": {"seed": 2}}) != member_name(
        ("train.seed=1",), "decide", params
    )
    assert member_name((), "decide", params).startswith("baseline-")


def test_a_budget_draws_distinct_members_reproducibly() -> None:
    grid = expand("vae.lr=1,2,3,4 vae.batch_size=8,16,32")
    drawn = sample(grid, 5, seed=0)
    assert len(set(drawn)) == 5 and set(drawn) <= set(grid)
    assert drawn == sample(grid, 5, seed=0) and drawn != sample(grid, 5, seed=1)
    assert sample(grid, 50, seed=0) == grid


def test_a_member_pools_with_the_members_that_differ_only_by_seed() -> None:
    m = Member("x", ("vae.lr=0.1", "train.seed=3"), "decide")
    assert m.params() == {"vae.lr": "0.1", "train.seed": "3"}
    assert without_seed(m) == ("vae.lr=0.1",)
