"""Simulator properties on the `tiny` scale."""

import datetime as dt

import numpy as np
import pyarrow as pa
import pytest

from ecdctr_pipeline.core.errors import EcdctrError
from ecdctr_pipeline.data import delta
from ecdctr_pipeline.data.simulate import World, get_scale, simulate
from ecdctr_pipeline.data.store import open_store

START, END = dt.date(2026, 1, 1), dt.date(2026, 4, 30)


@pytest.fixture(scope="module")
def tables(tmp_path_factory):
    from ecdctr_pipeline.core.settings import StoreSettings

    store = open_store(StoreSettings(root=f"file://{tmp_path_factory.mktemp('sim')}"))
    summary = simulate(store, START, END, "tiny", seed=11, progress=False)
    nat = delta.read(store, "raw/natural")[0]
    ad = delta.read(store, "raw/ad")[0]
    return summary, nat, ad


def test_volume_ratio_and_ctr_gap(tables):
    summary, nat, ad = tables
    assert nat.num_rows >= 5 * ad.num_rows
    nat_ctr, ad_ctr = np.mean(nat["click"]), np.mean(ad["click"])
    assert 0.03 < ad_ctr < nat_ctr < 0.3
    assert summary["natural"]["rows"] == nat.num_rows


def test_shared_users_and_ad_items_subset(tables):
    _, nat, ad = tables
    nat_users, ad_users = set(nat["user_id"].to_pylist()), set(ad["user_id"].to_pylist())
    assert len(ad_users & nat_users) / len(ad_users) > 0.9
    world = World(get_scale("tiny"), 11)
    ad_items = set(ad["item_id"].to_pylist())
    assert ad_items <= set(np.flatnonzero(world.is_ad_item).tolist())
    assert len(ad_items) < len(set(nat["item_id"].to_pylist()))


@pytest.mark.parametrize("scale", ["tiny", "small"])
def test_table1_ratios_give_the_papers_volumes_and_ad_item_share(scale):
    """``<scale>:table1``: a month of natural impressions to the A-CTR window's 4 weeks of ad
    impressions ≈ Table 1's 1.35 : 1 (21 B / 6 months against 2.6 B), ad items ≈ 3% (459 K of
    16 M); users, items and the natural volume are the scale's own."""
    from ecdctr_pipeline.data.simulate import TABLE1_AD_ITEM_FRACTION, TABLE1_NATURAL_TO_AD

    base, t1 = get_scale(scale), get_scale(f"{scale}:table1")
    assert (t1.n_users, t1.n_items, t1.natural_per_day) == (base.n_users, base.n_items, base.natural_per_day)
    assert TABLE1_NATURAL_TO_AD == pytest.approx(1.35, abs=0.01) and TABLE1_AD_ITEM_FRACTION == pytest.approx(0.029, abs=0.001)
    world = World(t1, 5)
    first = dt.date(2026, 3, 2)
    nat = _days(world, "natural", first, 30).num_rows
    ad = _days(world, "ad", first, 28).num_rows
    assert nat / ad == pytest.approx(TABLE1_NATURAL_TO_AD * 30 / 28, rel=0.06), (nat, ad)
    assert world.is_ad_item.mean() == pytest.approx(TABLE1_AD_ITEM_FRACTION, abs=0.02 if scale == "tiny" else 0.01)
    # the default keeps 6 : 1 and 30% (the tests and committed reports were measured there)
    assert base.natural_per_day / base.ad_per_day == 6 and base.ad_item_fraction == 0.3
    with pytest.raises(EcdctrError, match="unknown scale 'small:paper'"):
        get_scale("small:paper")


def _shares(t):
    """Each user's (with >= 20 impressions) share of impressions per category."""
    users = np.asarray(t["user_id"])
    cats = np.asarray(t["category_id"])
    n_cat = int(cats.max()) + 1
    out = {}
    for u in np.unique(users):
        c = np.bincount(cats[users == u], minlength=n_cat)
        if c.sum() >= 20:
            out[u] = c / c.sum()
    return out


def _days(world, domain, first, n_days):
    return pa.concat_tables([world.day(domain, first + dt.timedelta(days=i)) for i in range(n_days)])


def test_interests_drift_month_to_month_but_keep_a_stable_part():
    # drift alone (the recent and seasonal interests off): Jan, Feb and the July half a period later
    world = World(get_scale("tiny", interest_strength=0.0, seasonal_strength=0.0, drift_period_months=12.0), 11)
    jan, feb, jul = (_shares(_days(world, "natural", dt.date(2026, m, 1), 28)) for m in (1, 2, 7))
    users = sorted(set(jan) & set(feb) & set(jul))
    assert len(users) > 30
    l1 = lambda a, b: np.mean([np.abs(a[u] - b[u]).sum() for u in users])  # noqa: E731
    rng = np.random.default_rng(0)
    shuffled = {u: jan[v] for u, v in zip(users, rng.permutation(users))}
    # the short-term part drifts: interests move more over 6 months than over 1
    assert l1(jan, jul) > l1(jan, feb)
    # the long-term part is stable: a user's July is closer to their own January than to a stranger's
    assert l1(jan, jul) < l1(shuffled, jul)


def _after_click_ratio(world, n_days=50):
    """CTR on a user's minor categories (< 15% of their clicks) the day after clicking that category,
    over the CTR 12 days after: > 1 when a click marks a recent interest that persists and fades."""
    t = _days(world, "natural", dt.date(2026, 3, 1), n_days)
    day = np.asarray(pa.compute.cast(t["event_time"], pa.int64())) // 86_400_000_000
    users, cats, click = np.asarray(t["user_id"]), np.asarray(t["category_id"]), np.asarray(t["click"]) == 1
    share = np.zeros((world.scale.n_users, int(cats.max()) + 1))
    np.add.at(share, (users[click], cats[click]), 1)
    share /= np.maximum(share.sum(1, keepdims=True), 1)
    clicked = set(zip(users[click], cats[click], day[click]))
    minor = share[users, cats] < 0.15
    ctr = []
    for gap in (1, 12):
        after = np.array([(u, c, d - gap) in clicked for u, c, d in zip(users, cats, day)])
        ctr.append(click[after & minor].mean())
    return ctr[0] / ctr[1]


def test_recent_interests_persist_and_decay():
    """A click in a category marks an interest episode: the day after, the user clicks that
    category far more often than 12 days after (measured on minor categories, where the long-term
    taste gives little); with the episodes off the ratio is about 1. Seeds 1, 2, 3 measured
    1.50 / 1.66 / 1.55 with the episodes and 1.19 / 1.10 / 0.97 without."""
    on = _after_click_ratio(World(get_scale("tiny", natural_per_day=3000), 2))
    off = _after_click_ratio(World(get_scale("tiny", natural_per_day=3000, interest_strength=0.0), 2))
    assert on > 1.4 and on > off + 0.3, (on, off)


def test_seasonal_interests_skip_the_last_28_days_but_not_the_months_before():
    """In a user's active month their seasonal category gets a far larger share of their clicks
    than in the month before (what a 28-day window sees) — the same as 3 months before."""
    world = World(get_scale("tiny", natural_per_day=3000), 6)
    share = {}
    for m in (1, 3, 4):
        t = _days(world, "natural", dt.date(2026, m, 1), 28)
        users, cats, click = np.asarray(t["user_id"]), np.asarray(t["category_id"]), np.asarray(t["click"]) == 1
        active = world.season_active(users, World.month_index(dt.date(2026, m, 1)))
        on_season = cats == world.season_cat[users]
        share[m] = (on_season[click & active].mean(), on_season[click & ~active].mean())
    # users active in April were active in January and inactive in March
    apr_active = {u for u in range(world.scale.n_users) if world.season_active(np.array([u]),
                                                                               World.month_index(dt.date(2026, 4, 1)))[0]}
    assert apr_active and all(world.season_active(np.array([u]), World.month_index(dt.date(2026, 1, 1)))[0]
                              for u in apr_active)
    for m in (1, 3, 4):
        on, off = share[m]
        assert on > off + 0.1, (m, share)


def test_context_and_city_shift_the_click_rate():
    world = World(get_scale("tiny", natural_per_day=4000), 7)
    t = _days(world, "natural", dt.date(2026, 3, 2), 28)
    hour, click = np.asarray(t["hour"]), np.asarray(t["click"])
    evening, night = click[(hour >= 18) & (hour <= 22)].mean(), click[(hour >= 2) & (hour <= 7)].mean()
    assert evening > 1.2 * night, (evening, night)
    flat = World(get_scale("tiny", natural_per_day=4000, context_signal=0.0), 7)
    t0 = _days(flat, "natural", dt.date(2026, 3, 2), 28)
    h0, c0 = np.asarray(t0["hour"]), np.asarray(t0["click"])
    assert abs(c0[(h0 >= 18) & (h0 <= 22)].mean() / c0[(h0 >= 2) & (h0 <= 7)].mean() - 1) < 0.2


def test_users_absent_for_weeks_come_back(tables):
    _, nat, _ = tables
    days = np.asarray(pa.compute.cast(nat["event_time"], pa.int64())) // 86_400_000_000
    users = np.asarray(nat["user_id"])
    returning = 0
    for u in np.unique(users):
        d = np.unique(days[users == u])
        if len(d) > 1 and np.max(np.diff(d)) >= 10:
            returning += 1
    assert returning >= 20


def test_some_users_are_away_longer_than_any_28_day_window(tables):
    _, nat, _ = tables
    days = np.asarray(pa.compute.cast(nat["event_time"], pa.int64())) // 86_400_000_000
    users = np.asarray(nat["user_id"])
    long_gaps = sum(1 for u in np.unique(users) if np.max(np.diff(np.unique(days[users == u])), initial=0) > 30)
    assert long_gaps >= 10


def test_profiles_carry_signal(tables):
    _, nat, _ = tables
    age = np.asarray(nat["user_age"])
    cats = np.asarray(nat["category_id"])
    n_cat = int(cats.max()) + 1
    dists = [np.bincount(cats[age == a], minlength=n_cat) / max(1, (age == a).sum()) for a in range(8)]
    spread = np.mean([np.abs(dists[a] - dists[b]).sum() for a in range(8) for b in range(a + 1, 8)])
    assert spread > 0.15


def test_same_seed_identical_other_seed_differs():
    w1, w2, w3 = World(get_scale("tiny"), 5), World(get_scale("tiny"), 5), World(get_scale("tiny"), 6)
    day = dt.date(2026, 3, 3)
    assert w1.day("ad", day).equals(w2.day("ad", day))
    assert not w1.day("ad", day).equals(w3.day("ad", day))


def test_simulated_tables_identical_by_seed(tmp_path):
    from ecdctr_pipeline.core.settings import StoreSettings

    got = []
    for name in ("a", "b"):
        store = open_store(StoreSettings(root=f"file://{tmp_path / name}"))
        simulate(store, dt.date(2026, 2, 1), dt.date(2026, 2, 3), "tiny", seed=2, progress=False)
        got.append(delta.read(store, "raw/ad")[0].sort_by("event_time"))
    assert got[0].equals(got[1])


def test_ad_domain_is_shifted_and_natural_rows_do_not_depend_on_the_shift():
    unshifted = get_scale("tiny", ad_taste_shift=0.0, ad_quality_shift=0.0, ad_feature_shift=0.0,
                          natural_per_day=4000, ad_per_day=4000)
    shifted = get_scale("tiny", natural_per_day=4000, ad_per_day=4000)
    for knob, bad in (("ad_feature_shift", 1.5), ("ad_taste_shift", -0.1), ("ad_quality_shift", float("nan"))):
        with pytest.raises(EcdctrError, match=f"simulator scale: {knob} must be"):
            get_scale("tiny", **{knob: bad})
    assert shifted.ad_taste_shift > 0 and shifted.ad_quality_shift > 0 and shifted.ad_feature_shift > 0
    w0, w1 = World(unshifted, 4), World(shifted, 4)
    days = [dt.date(2026, 3, 2) + dt.timedelta(days=i) for i in range(3)]
    for d in days:
        assert w0.day("natural", d).equals(w1.day("natural", d))  # the source domain is untouched
    cat = lambda w, dom, col: np.concatenate([np.asarray(w.day(dom, d)[col]) for d in days])  # noqa: E731
    slots = np.isin(cat(w1, "ad", "position"), World.AD_SLOTS).mean()
    slots_nat = np.isin(cat(w1, "natural", "position"), World.AD_SLOTS).mean()
    slots_0 = np.isin(cat(w0, "ad", "position"), World.AD_SLOTS).mean()
    # feature shift: sponsored slots and a mobile-heavy device mix in ads, as in the natural feed without it
    assert slots > 0.9 and abs(slots_0 - slots_nat) < 0.05
    assert (cat(w1, "ad", "device") == 0).mean() > (cat(w1, "natural", "device") == 0).mean() + 0.1
    # the ad click function has its own part: clicks follow the users' ad taste only when shifted
    def ad_taste_corr(w):
        users, items, click = cat(w, "ad", "user_id"), cat(w, "ad", "item_id"), cat(w, "ad", "click")
        own = np.einsum("ij,ij->i", w.user_ad_taste[users], w.item_vec[items])
        return np.corrcoef(own, click)[0, 1]
    assert ad_taste_corr(w1) > ad_taste_corr(w0) + 0.03
