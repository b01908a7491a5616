"""The seed-replicate protocol's arithmetic: configurations per tier, t intervals over
replicates, the replicates a decision needs (``ecdctr replicate``)."""

from __future__ import annotations

import pytest
from scipy import stats

from ecdctr_pipeline.app import replicates
from ecdctr_pipeline.core.errors import EcdctrError


def test_vary_one_tier_keeps_the_others_at_the_first_seed():
    cs = replicates.configs([3, 5, 7], ["all", "cpm", "target_only"])
    assert [c.cpm for c in cs["all"]] == [3, 5, 7] and all(c.tpm == c.cpm == c.actr == c.target_only for c in cs["all"])
    assert [(c.tpm, c.cpm, c.actr, c.target_only) for c in cs["cpm"]] == [(3, 3, 3, 3), (3, 5, 3, 3), (3, 7, 3, 3)]
    assert [c.target_only for c in cs["target_only"]] == [3, 5, 7] and {c.actr for c in cs["target_only"]} == {3}


@pytest.mark.parametrize("seeds, vary", [([], ["all"]), ([1, 1], ["all"]), ([0, 1], ["bn"]), ([0, 1], [])])
def test_bad_seeds_or_tiers_are_refused(seeds, vary):
    with pytest.raises(EcdctrError):
        replicates.configs(seeds, vary)


def test_the_interval_is_a_t_interval_over_replicates():
    x = [0.02, -0.01, 0.05, 0.00]
    r = replicates.seed_interval(x)
    sd = stats.tstd(x)
    half = stats.t.ppf(0.975, 3) * sd / 2
    assert r["n"] == 4 and r["sd"] == pytest.approx(sd)
    assert (r["ci_low"], r["ci_high"]) == pytest.approx((0.015 - half, 0.015 + half))
    assert replicates.seed_interval([0.1])["ci_low"] is None  # one replicate: no interval


def test_seeds_needed_grows_with_the_spread_and_shrinks_with_the_effect():
    n = replicates.seeds_needed(0.05, 0.02)
    assert stats.t.ppf(0.975, n - 1) * 0.05 / n ** 0.5 <= 0.02 < stats.t.ppf(0.975, n - 2) * 0.05 / (n - 1) ** 0.5
    assert replicates.seeds_needed(0.10, 0.02) > n > replicates.seeds_needed(0.05, 0.05)
    assert replicates.seeds_needed(0.05, 0.0) is None
