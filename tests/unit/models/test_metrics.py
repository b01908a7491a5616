import numpy as np
import pytest
from hypothesis import given, settings as hsettings, strategies as st

from ecdctr_pipeline.evaluation.metrics import MetricError, auc, evaluate, gauc, is_blessed, log_loss


def pairwise_auc(y, p):
    """AUC by its definition: the share of (click, non-click) pairs ranked right, ties half."""
    pos, neg = p[y == 1][:, None], p[y == 0][None, :]
    return float(((pos > neg) + 0.5 * (pos == neg)).mean())


def brute_force_gauc(y, p, u):
    num = den = 0.0
    for user in np.unique(u):
        m = u == user
        if 0 < y[m].sum() < m.sum():
            num += pairwise_auc(y[m], p[m]) * m.sum()
            den += m.sum()
    return num / den, den / len(y)


@hsettings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(20, 400), users=st.integers(1, 30), ties=st.booleans())
def test_gauc_equals_brute_force(seed, n, users, ties):
    rng = np.random.default_rng(seed)
    u = rng.integers(0, users, n)
    y = (rng.random(n) < 0.3).astype(int)
    p = rng.random(n)
    if ties:
        p = np.round(p, 1)
    try:
        want, cov = brute_force_gauc(y, p, u)
    except ZeroDivisionError:
        with pytest.raises(MetricError, match="coverage is zero"):
            gauc(y, p, u)
        return
    got = gauc(y, p, u)
    assert got.gauc == pytest.approx(want, abs=1e-12)
    assert got.coverage == pytest.approx(cov, abs=1e-12)


def test_single_class_users_skipped_and_coverage():
    y = np.array([1, 0, 1, 1, 0, 0])
    p = np.array([0.9, 0.1, 0.5, 0.6, 0.2, 0.3])
    u = np.array([1, 1, 2, 2, 3, 3])  # user 2 all clicks, user 3 none: skipped
    r = gauc(y, p, u)
    assert (r.gauc, r.coverage, r.users_scored, r.users_total) == (1.0, pytest.approx(1 / 3), 1, 3)


def test_auc_and_logloss_match_their_definitions():
    rng = np.random.default_rng(3)
    y = (rng.random(500) < 0.2).astype(int)
    p = np.clip(rng.random(500), 0.01, 0.99)
    assert auc(y, p) == pytest.approx(pairwise_auc(y, p), abs=1e-12)
    tied = np.round(p, 1)
    assert auc(y, tied) == pytest.approx(pairwise_auc(y, tied), abs=1e-12)
    want = -sum(np.log(pi) if yi else np.log(1 - pi) for yi, pi in zip(y, p)) / len(y)
    assert log_loss(y, p) == pytest.approx(want, abs=1e-9)
    out = evaluate(y, p, rng.integers(0, 10, 500))
    assert set(out) >= {"gauc", "gauc_coverage", "auc", "logloss"}


def test_bad_inputs():
    with pytest.raises(MetricError, match="same length"):
        gauc([1, 0], [0.5], [1, 1])
    with pytest.raises(MetricError, match="0 or 1"):
        auc([2, 0], [0.1, 0.2])
    with pytest.raises(MetricError, match="not finite"):
        auc([1, 0], [np.nan, 0.2])


@pytest.mark.parametrize("cand, base, tol, blessed", [
    (0.70, None, 0.0, True), (0.70, 0.70, 0.0, True), (0.699, 0.70, 0.002, True),
    (0.69, 0.70, 0.002, False), (float("nan"), None, 0.0, False),
])
def test_is_blessed(cand, base, tol, blessed):
    assert is_blessed(cand, base, tol) is blessed


@pytest.mark.parametrize("cand, base, floor, blessed", [
    (0.49, None, 0.5, False), (0.50, None, 0.5, True), (0.55, 0.50, 0.6, False), (0.61, 0.62, 0.6, True),
])
def test_is_blessed_below_the_absolute_floor_never(cand, base, floor, blessed):
    assert is_blessed(cand, base, 0.002 if base is None else 0.02, floor) is blessed


def test_paired_gauc_lift_interval_covers_the_lift_and_separates_a_better_model():
    from ecdctr_pipeline.evaluation.metrics import paired_gauc_lift

    rng = np.random.default_rng(0)
    days = []
    for _ in range(2):
        u = rng.integers(0, 200, 4000)
        y = (rng.random(4000) < 0.3).astype(int)
        good = y * 0.5 + rng.random(4000)  # informative scores
        noise = rng.random(4000)
        days.append((y, u, good, noise))
    r = paired_gauc_lift(days, n_boot=500)
    assert r["gauc_a"] == pytest.approx(np.mean([gauc(y, a, u).gauc for y, u, a, _ in days]), abs=0.02)
    assert r["lift"] == pytest.approx(r["gauc_a"] - r["gauc_b"])
    assert 0 < r["ci_low"] <= r["lift"] <= r["ci_high"]
    same = paired_gauc_lift([(y, u, a, a) for y, u, a, _ in days], n_boot=200)
    assert same["lift"] == same["ci_low"] == same["ci_high"] == 0.0
    with pytest.raises(MetricError, match="coverage is zero"):
        paired_gauc_lift([(np.ones(5), np.arange(5), np.ones(5), np.ones(5))])


def test_evaluate_without_any_two_class_user_raises_or_reports():
    labels, scores, users = np.array([1.0, 1.0, 0.0]), np.array([0.9, 0.2, 0.4]), np.array([1, 1, 2])
    with pytest.raises(MetricError, match="GAUC coverage is zero"):
        evaluate(labels, scores, users)
    m = evaluate(labels, scores, users, allow_no_gauc=True)
    assert (m["gauc"], m["gauc_coverage"], m["impressions"]) == (None, 0.0, 3) and "coverage is zero" in m["gauc_error"]
    assert m["auc"] == pytest.approx(0.5) and m["logloss"] > 0  # the pooled metrics still exist
