"""Metrics as pure vectorised functions of (labels, scores[, user ids]), and the blessing gate.

GAUC (paper eq. 4): the impression-weighted mean of per-user AUC over users that have both
a click and a non-click; users with one class are skipped and the share of impressions
that were scored is reported as ``coverage``. Ties in scores count one half (rank average).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from ecdctr_pipeline.core.errors import EcdctrError


class MetricError(EcdctrError):
    """A metric cannot be computed on this data (e.g. GAUC with zero coverage)."""


def _check(labels, scores, users=None):
    y = np.asarray(labels).astype(np.float64).ravel()
    p = np.asarray(scores).astype(np.float64).ravel()
    if y.shape != p.shape or (users is not None and np.asarray(users).ravel().shape != y.shape):
        raise MetricError(f"labels, scores (and users) must have the same length: {y.shape}, {p.shape}")
    if y.size == 0:
        raise MetricError("no rows to evaluate")
    if not np.all((y == 0) | (y == 1)):
        raise MetricError("labels must be 0 or 1")
    if not np.all(np.isfinite(p)):
        raise MetricError(f"{int((~np.isfinite(p)).sum())} scores are not finite")
    return y, p


def _grouped_average_ranks(groups: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Order by (group, score) and the 1-based rank of each row within its group, ties averaged."""
    # one integer sort key (group, dense score rank) is much faster than a lexsort
    _, score_rank = np.unique(scores, return_inverse=True)
    key = groups.astype(np.int64) * (int(score_rank.max()) + 1) + score_rank
    order = np.argsort(key, kind="stable")
    g, s = groups[order], score_rank[order]
    n = len(g)
    new_group = np.ones(n, bool)
    new_group[1:] = g[1:] != g[:-1]
    group_start = np.maximum.accumulate(np.where(new_group, np.arange(n), 0))
    new_tie = new_group.copy()
    new_tie[1:] |= s[1:] != s[:-1]
    tie_id = np.cumsum(new_tie) - 1
    pos = np.arange(n) - group_start + 1  # 1-based position within the group
    first = np.bincount(tie_id, weights=pos)
    count = np.bincount(tie_id)
    ranks = (first / count)[tie_id]  # mean position of each tie block
    return order, ranks


def auc(labels, scores) -> float:
    y, p = _check(labels, scores)
    n_pos = y.sum()
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        raise MetricError("AUC needs both clicks and non-clicks")
    order, ranks = _grouped_average_ranks(np.zeros(y.size, np.int64), p)
    return float((ranks[y[order] == 1].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def log_loss(labels, scores, eps: float = 1e-7) -> float:
    y, p = _check(labels, scores)
    p = np.clip(p, eps, 1 - eps)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


@dataclass(frozen=True)
class GaucResult:
    gauc: float
    coverage: float  # share of impressions scored (users with both classes)
    users_scored: int
    users_total: int
    impressions: int

    def to_dict(self) -> dict:
        return asdict(self)


def user_aucs(labels, scores, users) -> tuple[np.ndarray, np.ndarray, int]:
    """GAUC's terms: the AUC and impression count of every user with both a click and a
    non-click (in the order of the sorted user ids), and the number of users seen."""
    y, p = _check(labels, scores, users)
    _, u = np.unique(np.asarray(users).ravel(), return_inverse=True)
    order, ranks = _grouped_average_ranks(u, p)
    uo, yo = u[order], y[order]
    n_users = int(u.max()) + 1
    n = np.bincount(uo, minlength=n_users).astype(np.float64)
    n_pos = np.bincount(uo, weights=yo, minlength=n_users)
    n_neg = n - n_pos
    pos_rank_sum = np.bincount(uo, weights=ranks * yo, minlength=n_users)
    ok = (n_pos > 0) & (n_neg > 0)
    user_auc = (pos_rank_sum[ok] - n_pos[ok] * (n_pos[ok] + 1) / 2) / (n_pos[ok] * n_neg[ok])
    return user_auc, n[ok], n_users


def gauc(labels, scores, users) -> GaucResult:
    user_auc, w, n_users = user_aucs(labels, scores, users)
    if not w.size:
        raise MetricError(f"GAUC coverage is zero: none of {n_users} users has both a click and a non-click")
    return GaucResult(float(np.sum(user_auc * w) / w.sum()), float(w.sum() / np.asarray(labels).size),
                      int(w.size), n_users, int(np.asarray(labels).size))


def expected_user_aucs(probs, scores, users) -> tuple[np.ndarray, np.ndarray, int]:
    """The noise-free GAUC terms of a simulated holdout, whose click probabilities ``probs`` are
    known: each user's expected AUC ``sum p_i (1 - p_j) [s_i > s_j] / sum p_i (1 - p_j)`` over the
    pairs i != j of their impressions (ties in scores count one half), the expectation of the AUC
    numerator and denominator over the clicks the probabilities would draw. Returned like
    :func:`user_aucs`: the terms and impression counts of the users with at least two impressions,
    and the number of users seen."""
    p = np.asarray(probs, np.float64).ravel()
    sc = np.asarray(scores, np.float64).ravel()
    if p.shape != sc.shape or np.asarray(users).ravel().shape != p.shape:
        raise MetricError(f"probabilities, scores and users must have the same length: {p.shape}, {sc.shape}")
    if p.size == 0:
        raise MetricError("no rows to evaluate")
    if not np.all((p >= 0) & (p <= 1)):
        raise MetricError("click probabilities must lie in [0, 1]")
    if not np.all(np.isfinite(sc)):
        raise MetricError(f"{int((~np.isfinite(sc)).sum())} scores are not finite")
    _, u = np.unique(np.asarray(users).ravel(), return_inverse=True)
    _, score_rank = np.unique(sc, return_inverse=True)
    order = np.argsort(u.astype(np.int64) * (int(score_rank.max()) + 1) + score_rank, kind="stable")
    uo, so, po = u[order], score_rank[order], p[order]
    qo = 1.0 - po
    n = len(uo)
    new_group = np.ones(n, bool)
    new_group[1:] = uo[1:] != uo[:-1]
    new_tie = new_group.copy()
    new_tie[1:] |= so[1:] != so[:-1]
    before = np.cumsum(qo) - qo  # sum of q over every earlier row (all groups)
    group_base = before[np.maximum.accumulate(np.where(new_group, np.arange(n), 0))]
    tie_start = np.maximum.accumulate(np.where(new_tie, np.arange(n), 0))
    tie_id = np.cumsum(new_tie) - 1
    tie_q = np.bincount(tie_id, weights=qo)[tie_id]
    lower = before[tie_start] - group_base  # q of the group's rows scored strictly lower
    num_rows = po * (lower + 0.5 * (tie_q - qo))
    n_users = int(u.max()) + 1
    group_q = np.bincount(uo, weights=qo, minlength=n_users)
    num = np.bincount(uo, weights=num_rows, minlength=n_users)
    den = np.bincount(uo, weights=po * (group_q[uo] - qo), minlength=n_users)
    count = np.bincount(uo, minlength=n_users).astype(np.float64)
    ok = (count >= 2) & (den > 0)
    return num[ok] / den[ok], count[ok], n_users


def expected_gauc(probs, scores, users) -> GaucResult:
    """GAUC without label noise (see :func:`expected_user_aucs`), impression-weighted like
    :func:`gauc`; ``coverage`` is the share of impressions in users with two or more."""
    user_auc, w, n_users = expected_user_aucs(probs, scores, users)
    if not w.size:
        raise MetricError(f"expected GAUC coverage is zero: none of {n_users} users has two impressions")
    return GaucResult(float(np.sum(user_auc * w) / w.sum()), float(w.sum() / np.asarray(probs).size),
                      int(w.size), n_users, int(np.asarray(probs).size))


def pooled_gauc(days: list[tuple], *, expected: bool = False) -> GaucResult:
    """GAUC pooled over several holdouts, one ``(labels, users, scores)`` per day: a (day, user)
    group is the unit (the impression-weighted mean of the groups' AUCs). ``expected``: the days
    are ``(probs, users, scores)`` of simulated holdouts and the groups' terms are their expected
    AUCs (:func:`expected_user_aucs`)."""
    if not days:
        raise MetricError("no days to pool")
    terms = expected_user_aucs if expected else user_aucs
    aucs, ws, users, rows = [], [], 0, 0
    for labels, u, scores in days:
        a, w, n = terms(labels, scores, u)
        aucs.append(a), ws.append(w)
        users, rows = users + n, rows + np.asarray(labels).size
    a, w = np.concatenate(aucs), np.concatenate(ws)
    if not w.size:
        raise MetricError(f"GAUC coverage is zero: none of {users} (day, user) groups has "
                          f"{'two impressions' if expected else 'both classes'}")
    return GaucResult(float(np.sum(a * w) / w.sum()), float(w.sum() / rows), int(w.size), users, rows)


def paired_gauc_lift(days: list[tuple], *, n_boot: int = 2000, seed: int = 0, level: float = 0.95) -> dict:
    """GAUC of model A minus model B pooled over holdout days, with a paired bootstrap CI.

    ``days``: one ``(labels, users, scores_a, scores_b)`` per day (both models scored on the same
    rows). A (day, user) group is GAUC's unit: the pooled GAUC is the impression-weighted mean of
    the per-group AUCs, and the bootstrap resamples groups with replacement (both models' AUCs of
    a group move together, so the interval is of the paired difference)."""
    if not days:
        raise MetricError("no days to compare")
    da, db, ws = [], [], []
    for labels, users, a, b in days:
        ua, w, _ = user_aucs(labels, a, users)
        ub, _, _ = user_aucs(labels, b, users)
        da.append(ua), db.append(ub), ws.append(w)
    a, b, w = np.concatenate(da), np.concatenate(db), np.concatenate(ws)
    if not w.size:
        raise MetricError("GAUC coverage is zero on every day: no user has both a click and a non-click")
    d = (a - b) * w
    rng = np.random.default_rng(seed)
    boot = np.empty(n_boot)
    for i in range(0, n_boot, 100):  # counts of each group in 100 resamples at a time
        k = min(100, n_boot - i)
        counts = rng.multinomial(w.size, np.full(w.size, 1.0 / w.size), size=k)
        boot[i:i + k] = (counts @ d) / (counts @ w)
    lo, hi = np.quantile(boot, [(1 - level) / 2, 1 - (1 - level) / 2])
    return {"gauc_a": float(np.sum(a * w) / w.sum()), "gauc_b": float(np.sum(b * w) / w.sum()),
            "lift": float(d.sum() / w.sum()), "ci_low": float(lo), "ci_high": float(hi), "level": level,
            "groups": int(w.size), "n_boot": n_boot, "resampled": "(day, user) groups"}


def evaluate(labels, scores, users, *, allow_no_gauc: bool = False) -> dict:
    """GAUC (+coverage), AUC and log loss in one dict. With ``allow_no_gauc`` a holdout on which no
    user has both classes gives ``gauc`` None, coverage 0 and the reason (``gauc_error``) instead
    of raising :class:`MetricError`."""
    try:
        g = gauc(labels, scores, users)
        out = {"gauc": g.gauc, "gauc_coverage": g.coverage, "gauc_users": g.users_scored,
               "impressions": g.impressions}
    except MetricError as exc:
        if not allow_no_gauc:
            raise
        out = {"gauc": None, "gauc_coverage": 0.0, "gauc_users": 0, "impressions": int(np.size(labels)),
               "gauc_error": str(exc)}
    out["logloss"] = log_loss(labels, scores)
    try:
        out["auc"] = auc(labels, scores)
    except MetricError:
        out["auc"] = None
    return out


def is_blessed(candidate_gauc: float, baseline_gauc: float | None, tolerance: float, floor: float = 0.0) -> bool:
    """Bless when the candidate reaches the absolute ``floor`` and either there is no baseline or it
    is not worse than the baseline by more than ``tolerance``."""
    if tolerance < 0:
        raise ValueError(f"tolerance must be >= 0. Received: tolerance={tolerance}")
    if not np.isfinite(candidate_gauc) or candidate_gauc < floor:
        return False
    return baseline_gauc is None or candidate_gauc >= baseline_gauc - tolerance
