"""genpipe.sweeps.tune: the same budget per family, the best member by its val score only."""

from __future__ import annotations

import pytest

from genpipe.config import ConfigError
from genpipe.sweeps.plan import Member, expand
from genpipe.sweeps.report import MemberResult
from genpipe.sweeps.tune import as_spec, family_members, ranked, report, verdict_spec
from tests.params import params_with


def _member(family: str, overrides: tuple[str, ...], fd: float | None) -> MemberResult:
    metrics = {} if fd is None else {"val": {family: {"fd": fd, "recognised": 0.5}}}
    outcome = "failed" if fd is None else "ran"
    return MemberResult(
        Member("-".join(overrides), overrides, f"score_val@{family}"), outcome, 60.0, metrics
    )


def test_every_family_draws_the_same_budget_from_its_own_space() -> None:
    config = params_with({"tune": {"budget": 3}}).tune
    sizes = {}
    for family in ("vae", "gan"):
        sizes[family], drawn = family_members(config, family)
        assert len(drawn) == 3 and len(set(drawn)) == 3
        assert all(o.startswith(f"{family}.") for overrides in drawn for o in overrides)
        assert expand(as_spec(drawn)) == drawn  # the spec a sweep expands back to these members
    assert sizes == {"vae": 18, "gan": 24}


def test_a_space_must_tune_its_own_family() -> None:
    with pytest.raises(ConfigError, match=r"tune\.space"):
        params_with({"tune": {"space": {"vae": ["gan.lr.generator=1,2"], "gan": []}}})


def test_the_best_member_is_the_lowest_val_fd_and_the_verdict_retrains_both_over_seeds() -> None:
    vae = [_member("vae", ("vae.lr=0.001",), 4.0), _member("vae", ("vae.lr=0.002",), 3.0)]
    gan = [
        _member("gan", ("gan.batch_size=32",), 6.0),
        _member("gan", ("gan.batch_size=64",), None),
    ]
    assert [r.member.overrides for r in ranked(vae, "vae", "fd")] == [
        ("vae.lr=0.002",),
        ("vae.lr=0.001",),
    ]
    assert [r.member.overrides for r in ranked(gan, "gan", "recognised")] == [
        ("gan.batch_size=32",)
    ]
    best = {"vae": ranked(vae, "vae", "fd")[0], "gan": ranked(gan, "gan", "fd")[0]}
    spec = verdict_spec(best, 3)
    assert spec == "vae.lr=0.002 gan.batch_size=32 train.seed=range(0,3)"
    assert len(expand(spec)) == 3

    config = params_with({"tune": {"budget": 2}}).tune
    text = report("digits", config, {"vae": 18, "gan": 24}, {"vae": vae, "gan": gan}, "VERDICT")
    assert "2 sweep members per family" in text
    assert "(18 configurations)" in text and "(24 configurations)" in text
    assert text.index("| vae.lr=0.002 | 3.000") < text.index("| vae.lr=0.001 | 4.000")
    assert "GAN: 2 members, 1 failed" in text and "(failed)" in text
    assert text.endswith("VERDICT")
