"""The replicate protocol's statistics, and a test of the instrument itself: on independent
simulated worlds scored by the expected GAUC of a probe holdout, a planted effect of the paper's
size is detected and an A/A comparison is not."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from ecdctr_pipeline.core.errors import EcdctrError
from ecdctr_pipeline.data.simulate import World, get_scale
from ecdctr_pipeline.evaluation.metrics import expected_gauc
from ecdctr_pipeline.evaluation.protocol import holm, mde, paired_test, verdict


def test_holm_adjusts_step_down_and_stays_monotone():
    adj = holm({"a": 0.01, "b": 0.04, "c": 0.03})
    assert adj == pytest.approx({"a": 0.03, "c": 0.06, "b": 0.06})
    assert holm({}) == {}


def test_mde_shrinks_with_replicates_and_grows_with_the_spread():
    assert mde(0.01, 1) is None
    m10, m40 = mde(0.01, 10), mde(0.01, 40)
    assert m40 < m10 < mde(0.02, 10)
    # large n: (z_.975 + z_.8) * sd / sqrt(n) = 2.80 * sd / sqrt(n)
    assert mde(1.0, 10_000) == pytest.approx(2.8016 / 100, rel=1e-3)


def test_paired_test_and_its_verdicts():
    up = paired_test([0.010, 0.012, 0.008, 0.011])
    assert up["p"] < 0.01 and verdict(up, up["p"]) == "holds"
    down = paired_test([-0.010, -0.012, -0.008, -0.011])
    assert verdict(down, down["p"]) == "reversed"
    noisy = paired_test([0.01, -0.012, 0.004, -0.003])
    assert verdict(noisy, noisy["p"]) == "unresolved"
    # non-inferiority: slightly below, within the margin, holds one-sided
    ni = paired_test([-0.001, 0.0, -0.0005, 0.0002], margin=0.005, alternative="greater")
    assert verdict(ni, ni["p"]) == "holds"
    with pytest.raises(EcdctrError, match="at least 2 finite replicate lifts"):
        paired_test([0.1])


def _replicate_lifts(n_worlds: int, planted: float, sigma: float = 1.0, days: int = 3):
    """Per world: a model is the true logit plus noise of a training seed of its own; the planted
    variant adds ``planted`` x the true logit to the same noise; the A/A variant is the same model
    under another noise seed. Lifts in expected GAUC on 50x probe holdouts, averaged over days."""
    planted_lifts, aa_lifts = [], []
    for w_seed in range(n_worlds):
        world = World(get_scale("tiny"), 100 + w_seed)
        rng = np.random.default_rng([w_seed, 1])
        lp, la = [], []
        for k in range(days):
            table, p = world.probe("ad", dt.date(2026, 3, 10) + dt.timedelta(days=k), 50)
            users, logit = np.asarray(table["user_id"]), np.log(p / (1 - p))
            base = logit + sigma * rng.normal(size=p.size)
            other_seed = logit + sigma * rng.normal(size=p.size)
            ref = expected_gauc(p, base, users).gauc
            lp.append(expected_gauc(p, base + planted * logit, users).gauc - ref)
            la.append(expected_gauc(p, other_seed, users).gauc - ref)
        planted_lifts.append(float(np.mean(lp)))
        aa_lifts.append(float(np.mean(la)))
    return planted_lifts, aa_lifts


def test_the_instrument_detects_a_planted_effect_and_not_an_a_a_difference():
    planted, aa = _replicate_lifts(12, planted=0.1)
    tests = {"planted": paired_test(planted), "A/A": paired_test(aa)}
    adjusted = holm({k: t["p"] for k, t in tests.items()})
    effect = tests["planted"]["mean"]
    assert 0.002 < effect < 0.009  # the size of the paper's effects
    assert verdict(tests["planted"], adjusted["planted"]) == "holds"
    assert verdict(tests["A/A"], adjusted["A/A"]) == "unresolved"
    # the A/A spread (training-seed noise) sets the MDE: 12 worlds resolve the planted effect
    assert mde(tests["A/A"]["sd"], len(aa)) < effect


def test_replicates_needed_is_the_smallest_n_whose_mde_reaches_the_effect():
    from ecdctr_pipeline.evaluation.protocol import replicates_needed

    n = replicates_needed(0.01, 0.005)
    assert mde(0.01, n) <= 0.005 < mde(0.01, n - 1)
    assert replicates_needed(0.0, 0.005) == 2 and replicates_needed(None, 0.005) is None
    assert replicates_needed(1.0, 1e-4, most=100) is None  # past the cap
