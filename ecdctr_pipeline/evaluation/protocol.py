"""The statistics of a comparison whose unit is the replicate (issue 31).

A replicate is one independent simulated world (or, on a real log, one training seed) with its
own training seeds: the days, users and models of one replicate share their world, TPM, CPM and
training run, so they are not independent and a (day, user) bootstrap inside one replicate
understates the spread. These functions take one paired lift per replicate (variant A minus B,
each pooled over the replicate's holdout days):

* :func:`seed_interval` — mean, sd and the t interval over replicates;
* :func:`paired_test` — the paired t test of the mean lift (two-sided p, or one-sided for a
  non-inferiority margin);
* :func:`holm` — Holm's step-down adjustment across a table's orderings;
* :func:`mde` — the minimum detectable effect at a power (80%) for n replicates and an sd;
* :func:`replicates_needed` — the fewest replicates whose MDE is at most a target effect;
* :func:`verdict` — "holds" / "reversed" / "unresolved" for an ordering the paper states, after
  the adjustment (a ">=" ordering holds when non-inferior by ``margin``).
"""

from __future__ import annotations

import numpy as np

from ecdctr_pipeline.core.errors import EcdctrError


def seed_interval(values: list[float], level: float = 0.95) -> dict:
    """Mean, sample standard deviation and the t interval of the mean over replicates."""
    from scipy import stats

    x = np.asarray(values, dtype=float)
    n = x.size
    mean = float(x.mean())
    if n < 2:
        return {"n": n, "mean": mean, "sd": None, "ci_low": None, "ci_high": None}
    sd = float(x.std(ddof=1))
    half = float(stats.t.ppf(0.5 + level / 2, n - 1)) * sd / np.sqrt(n)
    return {"n": n, "mean": mean, "sd": sd, "ci_low": mean - half, "ci_high": mean + half}


def seeds_needed(sd: float, effect: float, level: float = 0.95, most: int = 1000) -> int | None:
    """Fewest replicates whose t interval's half-width is at most ``effect`` given a
    replicate-to-replicate standard deviation ``sd`` (None past ``most``)."""
    from scipy import stats

    if effect <= 0:
        return None
    for n in range(2, most + 1):
        if stats.t.ppf(0.5 + level / 2, n - 1) * sd / np.sqrt(n) <= effect:
            return n
    return None


def paired_test(lifts: list[float], *, margin: float = 0.0, alternative: str = "two-sided") -> dict:
    """The paired t test over replicates of H0: mean lift = -margin. ``alternative``: "two-sided",
    or "greater" (the one-sided test of A >= B - margin, non-inferiority when margin > 0)."""
    from scipy import stats

    x = np.asarray(lifts, dtype=float)
    if x.size < 2 or not np.all(np.isfinite(x)):
        raise EcdctrError(f"paired test: needs at least 2 finite replicate lifts, got {x.tolist()}")
    if alternative not in ("two-sided", "greater"):
        raise EcdctrError(f"paired test: alternative must be two-sided or greater, got {alternative!r}")
    sd = float(x.std(ddof=1))
    se = sd / np.sqrt(x.size)
    t = float((x.mean() + margin) / se) if se > 0 else float(np.sign(x.mean() + margin) * np.inf)
    dof = x.size - 1
    p = float(2 * stats.t.sf(abs(t), dof)) if alternative == "two-sided" else float(stats.t.sf(t, dof))
    return {"n": int(x.size), "mean": float(x.mean()), "sd": sd, "t": t, "p": min(p, 1.0), "margin": margin,
            "alternative": alternative}


def holm(pvalues: dict[str, float]) -> dict[str, float]:
    """Holm's step-down adjusted p-values (family-wise error over the keys)."""
    items = sorted(pvalues.items(), key=lambda kv: kv[1])
    m, running, out = len(items), 0.0, {}
    for i, (k, p) in enumerate(items):
        running = max(running, min(1.0, (m - i) * p))
        out[k] = running
    return out


def mde(sd: float, n: int, *, alpha: float = 0.05, power: float = 0.8) -> float | None:
    """The smallest true mean lift a two-sided paired t test over ``n`` replicates with spread
    ``sd`` detects with probability ``power`` at level ``alpha`` (None under 2 replicates)."""
    from scipy import stats

    if n < 2 or sd is None:
        return None
    dof = n - 1
    return float((stats.t.ppf(1 - alpha / 2, dof) + stats.t.ppf(power, dof)) * sd / np.sqrt(n))


def replicates_needed(sd: float | None, effect: float, *, alpha: float = 0.05, power: float = 0.8,
                      most: int = 10_000) -> int | None:
    """The fewest replicates whose :func:`mde` is at most ``effect`` for a replicate-to-replicate
    spread ``sd`` (None when unknown or past ``most``)."""
    if sd is None or effect <= 0:
        return None
    if sd == 0:
        return 2
    lo, hi = 2, most
    if mde(sd, hi, alpha=alpha, power=power) > effect:
        return None
    while lo < hi:  # mde falls monotonically with n
        mid = (lo + hi) // 2
        if mde(sd, mid, alpha=alpha, power=power) <= effect:
            hi = mid
        else:
            lo = mid + 1
    return lo


def verdict(test: dict, adjusted_p: float, *, alpha: float = 0.05) -> str:
    """"holds" when the ordering A > B (or A >= B - margin) is significant after adjustment,
    "reversed" when a two-sided test finds A below B, else "unresolved"."""
    if adjusted_p <= alpha:
        if test["alternative"] == "greater" or test["mean"] > 0:
            return "holds"
        return "reversed"
    return "unresolved"
