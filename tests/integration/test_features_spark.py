"""Point-in-time feature logic (day-start snapshots: only the days before a row's day count) on a
hand-built log, with exact expected values."""

import datetime as dt

import pytest

from ecdctr_pipeline.core.schema import DEFAULT_SCHEMA
from ecdctr_pipeline.data.extract import spark_raw_schema
from ecdctr_pipeline.data.features import complete_features, tpm_features

pytestmark = [pytest.mark.integration, pytest.mark.spark]

UTC = dt.timezone.utc


def T(month, day, hour=0, minute=0, us=0):
    return dt.datetime(2026, month, day, hour, minute, 0, us, tzinfo=UTC)


# name: (user, item, category, time, click)
LOG = {
    "r1": (1, 10, 1, T(1, 1, 10), 1),        # history only (before the window); u1's first impression
    "r2": (1, 11, 2, T(1, 5, 10), 0),
    "r3": (1, 12, 1, T(1, 5, 10), 1),        # same instant as r2: neither sees the other
    "r4": (1, 10, 1, T(1, 5, 10, us=1), 0),  # 1 µs later, same day: does not see r3's click (nor r8 on i10)
    "r5": (1, 13, 3, T(1, 9, 12), 1),        # sees all of Jan 5 (7-day window from Jan 9 00:00: Jan 2..8)
    "r6": (1, 14, 2, T(1, 9, 12), 0),        # a click (r5) on the same day is not seen
    "r7": (1, 11, 2, T(1, 20), 0),           # sequence truncated to the last 2 clicks
    "r8": (2, 10, 1, T(1, 5, 10), 1),        # u2's first impression: empty sequence
    "r9": (2, 10, 1, T(2, 20), 0),           # u2 returns after > 28 days: history expired
    "r10": (2, 15, 4, T(2, 20), 0),          # tie with r9
    "r11": (3, 16, 5, T(1, 7, 23, 59, 999_999), 1),  # the last minute of Jan 7
    "r12": (3, 17, 5, T(1, 8), 0),           # 00:00 the next day: sees r11
    "r13": (3, 16, 5, T(1, 15), 0),          # 7-day window Jan 8..14: r12 in it, r11 only in the 28-day one
}

# name: (hist items, hist categories, user imp7, clk7, imp28, clk28, item imp7, clk7, imp28, clk28)
EXPECTED = {
    "r2": ([10], [1], 1, 1, 1, 1, 0, 0, 0, 0),
    "r3": ([10], [1], 1, 1, 1, 1, 0, 0, 0, 0),
    "r4": ([10], [1], 1, 1, 1, 1, 1, 1, 1, 1),
    "r5": ([10, 12], [1, 1], 3, 1, 4, 2, 0, 0, 0, 0),
    "r6": ([10, 12], [1, 1], 3, 1, 4, 2, 0, 0, 0, 0),
    "r7": ([12, 13], [1, 3], 0, 0, 6, 3, 0, 0, 1, 0),
    "r8": ([], [], 0, 0, 0, 0, 1, 1, 1, 1),
    "r9": ([], [], 0, 0, 0, 0, 0, 0, 0, 0),
    "r10": ([], [], 0, 0, 0, 0, 0, 0, 0, 0),
    "r11": ([], [], 0, 0, 0, 0, 0, 0, 0, 0),
    "r12": ([16], [5], 1, 1, 1, 1, 0, 0, 0, 0),
    "r13": ([16], [5], 1, 0, 2, 1, 0, 0, 1, 1),
}


@pytest.fixture(scope="module")
def raw_df(spark):
    return spark.createDataFrame(_raw_rows(LOG), schema=spark_raw_schema(DEFAULT_SCHEMA))


def test_hand_built_log_exact(raw_df):
    """Both engines give the exact day-start values of the hand-built log."""
    import duckdb
    import pyarrow as pa

    from ecdctr_pipeline.data.features_duckdb import complete_features_sql

    kw = dict(max_seq_len=2, history_days=28, counter_windows_days=[7, 28])
    spark_rows = [r.asDict() for r in complete_features(raw_df, "2026-01-05", "2026-02-21", **kw).collect()]
    con = duckdb.connect()
    con.register("raw", pa.Table.from_pylist([dict(zip(DEFAULT_SCHEMA.names, r)) for r in _raw_rows(LOG)],
                                             schema=DEFAULT_SCHEMA.raw_schema))
    duck_rows = con.sql(complete_features_sql("raw", "2026-01-05", "2026-02-21", raw_names=DEFAULT_SCHEMA.names,
                                              **kw)).fetch_arrow_table().to_pylist()
    for engine, out in (("spark", spark_rows), ("duckdb", duck_rows)):
        by_key = {(r["user_id"], r["item_id"], r["event_time"].replace(tzinfo=UTC) if r["event_time"].tzinfo is None
                   else r["event_time"].astimezone(UTC)): r for r in out}
        assert len(out) == len(EXPECTED), engine  # r1 lies before the window: history only
        for name, exp in EXPECTED.items():
            u, i, _c, t, _k = LOG[name]
            r = by_key[(u, i, t)]
            got = tuple(r[c] for c in ("hist_item_ids", "hist_category_ids", "user_imp_7d", "user_clk_7d",
                                       "user_imp_28d", "user_clk_28d", "item_imp_7d", "item_clk_7d",
                                       "item_imp_28d", "item_clk_28d"))
            assert got == exp, (engine, name)
            assert r["hist_len"] == len(exp[0]), (engine, name)
            assert r["dt"] == t.date().isoformat(), (engine, name)


def test_tpm_features_columns(raw_df):
    out = tpm_features(raw_df, DEFAULT_SCHEMA.tpm_feature_names)
    assert out.columns == ["event_time", "user_id", "item_id", "category_id", "click", "user_age", "user_gender",
                           "user_city", "item_brand", "item_price", "dt"]
    assert out.count() == len(LOG)


def test_duckdb_reference_agrees_with_spark_on_simulated_data(spark, tmp_path):
    """Two independent implementations of the same point-in-time features agree row for row."""
    import duckdb
    import pyarrow.parquet as pq

    from ecdctr_pipeline.data.features_duckdb import complete_features_sql
    from ecdctr_pipeline.data.simulate import World, get_scale

    import pyarrow as pa

    world = World(get_scale("tiny"), 8)
    raw = pa.concat_tables([world.day("natural", dt.date(2026, 3, 1) + dt.timedelta(days=i)) for i in range(20)])
    path = tmp_path / "raw.parquet"
    pq.write_table(raw, path)
    kw = dict(max_seq_len=5, history_days=7, counter_windows_days=[3, 7], raw_names=DEFAULT_SCHEMA.names)
    sdf = complete_features(spark.read.schema(spark_raw_schema(DEFAULT_SCHEMA)).parquet(str(path)), "2026-03-08",
                            "2026-03-21", **kw)
    spark_rows = sorted((tuple(r) for r in sdf.drop("event_time").collect()), key=repr)
    sql = complete_features_sql(f"read_parquet('{path}')", "2026-03-08", "2026-03-21", **kw)
    duck = duckdb.sql(sql).fetch_arrow_table()
    duck_rows = sorted((tuple(r.values()) for r in duck.drop_columns(["event_time"]).to_pylist()), key=repr)
    assert len(spark_rows) == len(duck_rows) > 1000
    assert spark_rows == duck_rows
    # day-start snapshots: every row of a (user, day) carries the same user-side values, so no
    # same-day click can order the rows of a GAUC group
    user_side = ["hist_item_ids", "hist_category_ids", "hist_len", "user_imp_3d", "user_clk_3d", "user_imp_7d",
                 "user_clk_7d"]
    groups: dict = {}
    for r in duck.to_pylist():
        groups.setdefault((r["user_id"], r["dt"]), set()).add(repr([r[c] for c in user_side]))
    assert sum(1 for g in groups.values() if len(g) > 1) == 0
    assert sum(1 for r in duck.to_pylist() if r["hist_len"] > 0) > 100  # and the history is not empty


# platform-wide history: name: (user, item, category, time, click)
AD = {
    "a1": (1, 10, 1, T(1, 2), 1),            # history only
    "a2": (1, 11, 2, T(1, 5, 10), 0),
    "a3": (1, 12, 1, T(1, 6), 0),
    "a4": (2, 10, 1, T(1, 6), 0),            # u2 has no natural clicks
}
NATURAL = {
    "n1": (1, 20, 5, T(1, 3), 1),
    "n2": (1, 21, 5, T(1, 4), 0),            # not a click: never in a sequence
    "n3": (1, 22, 6, T(1, 5, 10), 1),        # same instant as a2: a2 does not see it
}
# name: (hist items, user imp 7d, user clk 7d, item imp 7d, item clk 7d): counters stay ad-only
PLATFORM = {"a2": ([10, 20], 1, 1, 0, 0), "a3": ([10, 20, 22], 2, 1, 0, 0), "a4": ([], 0, 0, 1, 1)}
AD_ONLY = {"a2": [10], "a3": [10], "a4": []}


def _raw_rows(log):
    return [(t, u, i, c, k, 2, 1, 5, 7, 3, t.hour, t.weekday(), 0, 1) for (u, i, c, t, k) in log.values()]


# features.ad_history: split — the natural clicks as a sequence of their own (max_seq_len 3 keeps the last 3)
SPLIT_SOURCE = {"a2": ([20], [5]), "a3": ([20, 22], [5, 6]), "a4": ([], [])}


def test_platform_history_adds_the_other_domains_clicks_to_sequences_only(spark):
    """Both engines: the natural clicks before an ad impression join its behaviour sequence (or,
    split, form a second sequence beside the ad-only one); the natural rows add no output rows and
    no counts."""
    import duckdb
    import pyarrow as pa

    from ecdctr_pipeline.core.schema import DEFAULT_SCHEMA
    from ecdctr_pipeline.data.features_duckdb import complete_features_sql

    kw = dict(max_seq_len=3, history_days=28, counter_windows_days=[7], raw_names=DEFAULT_SCHEMA.names)
    ad, nat = (spark.createDataFrame(_raw_rows(x), schema=spark_raw_schema(DEFAULT_SCHEMA)) for x in (AD, NATURAL))
    con = duckdb.connect()
    for name, log in (("ad_raw", AD), ("nat_raw", NATURAL)):
        con.register(name, pa.Table.from_pylist([dict(zip(DEFAULT_SCHEMA.names, r)) for r in _raw_rows(log)],
                                            schema=DEFAULT_SCHEMA.raw_schema))
    for mode in ("platform", "ad", "split"):
        other, split = mode != "ad", mode == "split"
        spark_rows = complete_features(ad, "2026-01-05", "2026-01-10", other_clicks=nat if other else None,
                                       other_sequence=split, **kw).collect()
        duck = con.sql(complete_features_sql("ad_raw", "2026-01-05", "2026-01-10", other_sequence=split,
                                             other_clicks="nat_raw" if other else None, **kw)).fetch_arrow_table()
        for engine, rows in (("spark", [r.asDict() for r in spark_rows]), ("duckdb", duck.to_pylist())):
            assert len(rows) == 3, engine  # a2, a3, a4: the natural rows are not features
            assert list(rows[0]) == DEFAULT_SCHEMA.complete_feature_schema([7], source_sequence=split).names, (engine, mode)
            by = {(r["user_id"], r["item_id"]): r for r in rows}
            for name, exp in PLATFORM.items():
                u, i, *_ = AD[name]
                r = by[(u, i)]
                want = exp if mode == "platform" else (AD_ONLY[name], *exp[1:])
                got = (r["hist_item_ids"], r["user_imp_7d"], r["user_clk_7d"], r["item_imp_7d"], r["item_clk_7d"])
                assert got == want, (engine, mode, name)
                assert r["hist_len"] == len(want[0])
                if split:
                    items, cats = SPLIT_SOURCE[name]
                    got = (r["src_hist_item_ids"], r["src_hist_category_ids"], r["src_hist_len"])
                    assert got == (items, cats, len(items)), (engine, name)
