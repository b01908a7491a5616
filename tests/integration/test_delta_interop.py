"""delta-spark and delta-rs agree on one table: each reads what the other wrote, across several
commits, a checkpoint, an OPTIMIZE and a VACUUM, and both keep to the pinned protocol. Plus the
writer lease and the one-line errors of the Spark path's bad inputs."""

from __future__ import annotations

import pyarrow as pa
import pytest
from deltalake import DeltaTable as RsTable

from ecdctr_pipeline.data import delta
from ecdctr_pipeline.core import paths
from ecdctr_pipeline.core.errors import ConfigError, StoreError
from ecdctr_pipeline.data.extract import extract_complete
from ecdctr_pipeline.core.settings import Settings, SparkSettings, StoreSettings
from ecdctr_pipeline.data.spark import DELTA_PROTOCOL
from ecdctr_pipeline.data.store import open_store

pytestmark = [pytest.mark.integration, pytest.mark.spark]


def _rows(day: str, ids: range) -> pa.Table:
    return pa.table({"id": pa.array(list(ids), pa.int64()), "v": pa.array([f"{day}:{i}" for i in ids]),
                     "dt": pa.array([day] * len(ids))})


def _as_set(table: pa.Table) -> set:
    return set(zip(table["id"].to_pylist(), table["v"].to_pylist(), table["dt"].to_pylist()))


def _protocol(uri: str) -> tuple[int, int]:
    p = RsTable(uri).protocol()
    assert not p.writer_features and not p.reader_features
    return p.min_reader_version, p.min_writer_version


def test_spark_writes_delta_rs_reads(spark, tmp_path):
    from delta.tables import DeltaTable

    uri = str(tmp_path / "t")
    furi = (tmp_path / "t").as_uri()
    expected: list[set] = []
    state: set = set()

    def write(mode, day, ids):
        nonlocal state
        w = spark.createDataFrame(_rows(day, ids).to_pandas()).write.format("delta").partitionBy("dt")
        if mode == "replace":
            w = w.mode("overwrite").option("replaceWhere", f"dt = '{day}'")
            state = {r for r in state if r[2] != day}
        else:
            w = w.mode("append")
        w.save(furi)
        state |= _as_set(_rows(day, ids))
        expected.append(set(state))

    write("append", "2026-01-01", range(0, 5))      # v0
    write("append", "2026-01-01", range(5, 9))      # v1: a second file in the partition
    write("append", "2026-01-02", range(9, 12))     # v2
    write("replace", "2026-01-02", range(100, 102))  # v3: replaceWhere
    spark.sql(f"ALTER TABLE delta.`{furi}` SET TBLPROPERTIES ('delta.checkpointInterval' = '2')")  # v4
    expected.append(set(state))
    write("append", "2026-01-03", range(12, 14))    # v5
    write("append", "2026-01-03", range(14, 15))    # v6: a checkpoint
    assert list((tmp_path / "t" / "_delta_log").glob("*.checkpoint.parquet")), "Spark wrote no checkpoint"
    DeltaTable.forPath(spark, furi).optimize().executeCompaction()  # v7: compacts 2026-01-01 and -03
    expected.append(set(state))

    # delta-rs reads every version Spark wrote, through the checkpoint and the OPTIMIZE
    assert _protocol(uri) == DELTA_PROTOCOL
    for version, want in enumerate(expected):
        assert _as_set(RsTable(uri, version=version).to_pyarrow_table()) == want, version
    assert RsTable(uri).history(1)[0]["operation"] == "OPTIMIZE"

    spark.conf.set("spark.databricks.delta.retentionDurationCheck.enabled", "false")
    try:
        DeltaTable.forPath(spark, furi).vacuum(0)  # removes the replaced and the compacted files
    finally:
        spark.conf.set("spark.databricks.delta.retentionDurationCheck.enabled", "true")
    t = RsTable(uri)
    assert _as_set(t.to_pyarrow_table()) == state
    assert len(t.file_uris()) == 3  # one file per partition is all that is left
    assert len(list((tmp_path / "t").glob("dt=*/*.parquet"))) == 3


def test_delta_rs_writes_spark_reads(spark, tmp_path):
    store = open_store(StoreSettings(root=f"file://{tmp_path}"))
    key = "t"
    furi = store.spark_uri(key)
    delta.write(store, key, _rows("2026-01-01", range(0, 5)))  # v0
    delta.write(store, key, _rows("2026-01-02", range(5, 9)))  # v1 (a new partition)
    delta.write(store, key, _rows("2026-01-01", range(100, 103)))  # v2 replaces 2026-01-01
    # Spark appends to the delta-rs table (v3), then delta-rs again (v4): one log, two writers
    spark.createDataFrame(_rows("2026-01-03", range(9, 11)).to_pandas()).write.format("delta") \
        .mode("append").save(furi)
    delta.write(store, key, _rows("2026-01-03", range(11, 12)), mode="append")
    want = _as_set(_rows("2026-01-01", range(100, 103))) | _as_set(_rows("2026-01-02", range(5, 9))) \
        | _as_set(_rows("2026-01-03", range(9, 12)))
    t = RsTable(str(store.local_path(key)))
    t.create_checkpoint()
    t.optimize.compact()  # v5: 2026-01-03 has two files
    assert _protocol(str(store.local_path(key))) == DELTA_PROTOCOL

    def spark_set(version=None):
        r = spark.read.format("delta")
        if version is not None:
            r = r.option("versionAsOf", version)
        got = r.load(furi).toPandas()
        return set(zip(got["id"], got["v"], got["dt"]))

    assert spark_set(1) == _as_set(_rows("2026-01-01", range(0, 5))) | _as_set(_rows("2026-01-02", range(5, 9)))
    assert spark_set() == want
    t = RsTable(str(store.local_path(key)))
    t.vacuum(retention_hours=0, enforce_retention_duration=False, dry_run=False)
    assert spark_set() == want  # after VACUUM too
    hist = [r["operation"] for r in spark.sql(f"DESCRIBE HISTORY delta.`{furi}`").collect()]
    assert "OPTIMIZE" in hist and "WRITE" in hist


# ------------------------------------------------------------------ the writer lease
def test_writer_lease_excludes_a_second_writer(any_store_settings):
    store = open_store(any_store_settings)
    now = [1000.0]
    with delta.writer_lease(store, "features/x", owner="first", ttl_s=60, clock=lambda: now[0]):
        with pytest.raises(delta.WriterBusyError, match=r"features/x is being written by first"):
            with delta.writer_lease(store, "features/x", owner="second", ttl_s=60, clock=lambda: now[0]):
                pass
        assert store.exists(paths.writer_lease("features/x"))
    assert not store.exists(paths.writer_lease("features/x"))  # released
    # a writer that died leaves a lease: once expired, the next writer takes it over
    store.put_bytes(paths.writer_lease("features/x"), b'{"owner": "dead", "token": "t", "expires": 900}')
    with delta.writer_lease(store, "features/x", owner="next", ttl_s=60, clock=lambda: now[0]):
        assert b'"next"' in store.get_bytes(paths.writer_lease("features/x"))
    assert not store.exists(paths.writer_lease("features/x"))


# ------------------------------------------------------------------ bad input: one line, nothing committed
def _spark_settings(store: StoreSettings, **spark_over) -> Settings:
    return Settings(store=store, spark=SparkSettings(master="local[2]", shuffle_partitions=2, **spark_over))


def _extract(settings, *args, **kw):
    return extract_complete(settings, open_store(settings.store), *args, **kw)


def test_missing_jars_are_named(local_store_settings, tmp_path, spark):
    (tmp_path / "jars").mkdir()
    for name in ("delta-spark_4.2_2.13-4.4.0.jar", "delta-storage-4.4.0.jar"):
        (tmp_path / "jars" / name).write_bytes(b"")
    with pytest.raises(ConfigError, match=r"spark\.jars_dir: no hadoop-aws-\*\.jar in .*jars \(run `make jars`\)"):
        _extract(_spark_settings(local_store_settings, jars_dir=str(tmp_path / "jars")), "ad", "2026-11-24",
                 spark=spark)
    with pytest.raises(ConfigError, match=r"spark\.jars_dir: .*nowhere does not exist"):
        _extract(_spark_settings(local_store_settings, jars_dir=str(tmp_path / "nowhere")), "ad",
                 "2026-11-24", spark=spark)


def test_missing_bucket_and_wrong_endpoint_are_named(s3_endpoint, spark):
    from tests.conftest import free_port

    good = StoreSettings(root="s3://no-such-bucket-ecdctr/pipeline", endpoint_url=s3_endpoint,
                         access_key_id="testing", secret_access_key="testing", allow_http=True)
    with pytest.raises(StoreError, match=r"store\.root: bucket 'no-such-bucket-ecdctr' does not exist"):
        _extract(_spark_settings(good), "ad", "2026-11-24", spark=spark)
    dead = good.model_copy(update={"endpoint_url": f"http://127.0.0.1:{free_port()}"})
    with pytest.raises(StoreError, match=r"store\.endpoint_url: cannot reach http://127\.0\.0\.1:\d+"):
        _extract(_spark_settings(dead), "ad", "2026-11-24", spark=spark)


def test_cli_reports_a_missing_bucket_in_one_line(s3_endpoint, tmp_path):
    import os
    import subprocess
    import sys

    env = {**os.environ, "ECDCTR_STORE": "s3://absent-bucket-ecdctr/p", "ECDCTR_STORE__ENDPOINT_URL": s3_endpoint,
           "ECDCTR_STORE__ALLOW_HTTP": "true"}
    r = subprocess.run([sys.executable, "-m", "ecdctr_pipeline.app.main", "extract", "complete", "--domain", "ad",
                        "--as-of", "2026-11-24"], env=env, capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode != 0
    assert r.stderr.strip().splitlines()[-1] == (f"ecdctr: error: store.root: bucket 'absent-bucket-ecdctr' does not "
                                                 f"exist at {s3_endpoint}")
    assert not (tmp_path / "ecdctr-data").exists()
