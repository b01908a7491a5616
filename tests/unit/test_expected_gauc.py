"""The noise-free GAUC of a holdout whose click probabilities are known."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from ecdctr_pipeline.evaluation.metrics import MetricError, expected_gauc, expected_user_aucs, gauc


def _brute(p, s, users):
    out = {}
    for u in np.unique(users):
        idx = np.flatnonzero(users == u)
        num = den = 0.0
        for i, j in itertools.permutations(idx, 2):
            w = p[i] * (1 - p[j])
            den += w
            num += w * (1.0 if s[i] > s[j] else 0.5 if s[i] == s[j] else 0.0)
        if len(idx) >= 2 and den > 0:
            out[u] = (num / den, len(idx))
    return out


def test_matches_the_pairwise_definition_with_ties():
    rng = np.random.default_rng(3)
    users = rng.integers(0, 40, 400)
    p = rng.uniform(0, 0.6, 400)
    s = np.round(rng.normal(size=400), 1)  # many ties
    aucs, w, n_users = expected_user_aucs(p, s, users)
    want = _brute(p, s, users)
    assert n_users == len(np.unique(users))
    assert np.allclose(aucs, [want[u][0] for u in sorted(want)]) and list(w) == [want[u][1] for u in sorted(want)]


def test_the_true_probability_beats_noise_and_observed_gauc_estimates_it():
    rng = np.random.default_rng(0)
    n = 200_000
    users = rng.integers(0, 20_000, n)
    logit = -2.5 + rng.normal(size=n)
    p = 1 / (1 + np.exp(-logit))
    truth = expected_gauc(p, p, users).gauc
    assert truth > 0.6
    assert abs(expected_gauc(p, rng.normal(size=n), users).gauc - 0.5) < 0.01
    assert expected_gauc(p, -p, users).gauc == pytest.approx(1 - truth)
    # the observed GAUC over drawn clicks is a noisy estimate of the same quantity
    clicks = (rng.random(n) < p).astype(int)
    assert abs(gauc(clicks, p, users).gauc - truth) < 0.03


def test_bad_input_is_one_line():
    with pytest.raises(MetricError, match=r"click probabilities must lie in \[0, 1\]"):
        expected_gauc([0.1, 1.2], [0, 1], [1, 1])
    with pytest.raises(MetricError, match="none of 2 users has two impressions"):
        expected_gauc([0.1, 0.2], [0, 1], [1, 2])
