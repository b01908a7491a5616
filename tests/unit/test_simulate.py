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


def _category_share(table, month):
    t = table.filter(pa.compute.equal(pa.compute.utf8_slice_codeunits(table["dt"], 0, 7), month))
    users = np.asarray(t["user_id"])
    cats = np.asarray(t["category_id"])
    n_cat = int(cats.max()) + 1
    out = {}
    for u in np.unique(users):
        c = np.bincount(cats[users == u], minlength=n_cat)
        if c.sum() >= 20:
            out[u] = c / c.sum()
    return out


def test_interests_drift_month_to_month_but_keep_a_stable_part(tables):
    _, nat, _ = tables
    jan, feb, apr = (_category_share(nat, m) for m in ("2026-01", "2026-02", "2026-04"))
    users = sorted(set(jan) & set(feb) & set(apr))
    assert len(users) > 30
    l1 = lambda a, b: np.mean([np.abs(a[u] - b[u]).sum() for u in users])  # noqa: E731
    rng = np.random.default_rng(0)
    shuffled = {u: jan[v] for u, v in zip(users, rng.permutation(users))}
    # the short-term part drifts: interests move more over 3 months than over 1
    assert l1(jan, apr) > l1(jan, feb)
    # the long-term part is stable: a user's April is closer to their own January than to a stranger's
    assert l1(jan, apr) < l1(shuffled, apr)


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
