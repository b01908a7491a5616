"""Extraction end to end on the local store (S3: test_spark_cluster.py, test_dags.py)."""

import datetime as dt

import pytest

from ecdctr_pipeline.data import delta
from ecdctr_pipeline.core import paths
from ecdctr_pipeline.data.extract import MissingDataError, extract_complete, extract_tpm
from ecdctr_pipeline.core.settings import Settings, SparkSettings
from ecdctr_pipeline.data.simulate import simulate
from ecdctr_pipeline.data.store import open_store

pytestmark = [pytest.mark.integration, pytest.mark.spark]


def _settings(store_settings):
    return Settings(store=store_settings, spark=SparkSettings(master="local[2]", shuffle_partitions=2))


def test_extract_complete_rerun_and_replace(local_store_settings, spark):
    # (s3a is exercised by test_spark_cluster.py and the end-to-end DAG test; replaceWhere and
    # txnAppId behave the same on every file system)
    settings = _settings(local_store_settings)
    store = open_store(local_store_settings)
    simulate(store, dt.date(2026, 9, 20), dt.date(2026, 11, 24), "tiny", seed=4, domains=("ad",), progress=False)
    r1 = extract_complete(settings, open_store(settings.store), "ad", "2026-11-24", spark=spark)
    table = paths.complete_features("ad")
    rows = delta.read(store, table)[0]
    assert r1.rows == rows.num_rows > 0 and not r1.skipped
    assert sorted(set(rows["dt"].to_pylist())) == [f"2026-{d}" for d in
                                                    [f"10-{x}" for x in range(27, 32)] + [f"11-{x:02d}" for x in range(1, 24)]]
    raw_counts = delta.read(store, paths.raw_table("ad"), partitions=rows["dt"].unique().to_pylist())[0].num_rows
    assert rows.num_rows == raw_counts  # one feature row per impression, none dropped
    # same raw version: the app transaction makes the rerun a no-op
    r2 = extract_complete(settings, open_store(settings.store), "ad", "2026-11-24", spark=spark)
    assert r2.skipped and delta.version(store, table) == r1.version
    # forced: recomputed and replaced, row count unchanged
    r3 = extract_complete(settings, open_store(settings.store), "ad", "2026-11-24", force=True, spark=spark)
    assert not r3.skipped and r3.version == r1.version + 1
    assert delta.read(store, table)[0].num_rows == rows.num_rows
    # the next day's window overlaps 27 days: they are replaced, never duplicated
    extract_complete(settings, open_store(settings.store), "ad", "2026-11-25", spark=spark)
    after = delta.read(store, table)[0]
    days = sorted(set(after["dt"].to_pylist()))
    assert days[0] == "2026-10-27" and days[-1] == "2026-11-24"
    assert after.num_rows == delta.read(store, paths.raw_table("ad"), partitions=days)[0].num_rows


def test_missing_day_is_named(local_store_settings, spark):
    settings = _settings(local_store_settings)
    store = open_store(local_store_settings)
    simulate(store, dt.date(2026, 10, 1), dt.date(2026, 11, 10), "tiny", seed=4, domains=("ad",), progress=False)
    with pytest.raises(MissingDataError, match="no raw data for 2026-11-11 in raw/ad"):
        extract_complete(settings, open_store(settings.store), "ad", "2026-11-24", spark=spark)
    assert not delta.exists(store, paths.complete_features("ad"))


def test_extract_tpm_months(local_store_settings, spark):
    settings = _settings(local_store_settings)
    store = open_store(local_store_settings)
    simulate(store, dt.date(2026, 4, 1), dt.date(2026, 9, 30), "tiny", seed=4, domains=("natural",), progress=False)
    r = extract_tpm(settings, open_store(settings.store), "2026-10", spark=spark)
    got = delta.read(store, paths.tpm_features())[0]
    assert r.partitions == 183 and got.num_rows == delta.read(store, paths.raw_table("natural"))[0].num_rows
    with pytest.raises(MissingDataError, match="no raw data for 2026-10-01"):
        extract_tpm(settings, open_store(settings.store), "2026-11", spark=spark)


def test_platform_history_extraction_equals_the_duckdb_engine(tmp_path, spark):
    """``features.ad_history: platform`` through Spark's extraction (both raw tables read at their
    versions) gives the DuckDB engine's table row for row."""
    import shutil

    keys = [(k, "ascending") for k in ("user_id", "item_id", "event_time")]
    base = Settings(store={"root": f"file://{tmp_path / 'spark'}"},
                    spark=SparkSettings(master="local[2]", shuffle_partitions=2),
                    calendar={"actr_window_days": 7}, features={"ad_history": "platform", "max_seq_len": 5})
    simulate(open_store(base.store), dt.date(2026, 10, 20), dt.date(2026, 11, 24), "tiny", seed=6, progress=False)
    shutil.copytree(tmp_path / "spark", tmp_path / "duckdb")
    duck = base.model_copy(deep=True)
    duck.store.root, duck.features.engine = f"file://{tmp_path / 'duckdb'}", "duckdb"
    r = extract_complete(base, open_store(base.store), "ad", "2026-11-24", spark=spark)
    d = extract_complete(duck, open_store(duck.store), "ad", "2026-11-24")
    assert r.rows == d.rows > 0
    got, want = (delta.read(open_store(x.store), paths.complete_features("ad"))[0].sort_by(keys) for x in (base, duck))
    assert got.column_names == want.column_names
    for c in want.column_names:  # (the writers differ only in the schema's nullability flags)
        assert got[c].combine_chunks().equals(want[c].combine_chunks()), c
