import pyarrow as pa
import pytest

from ecdctr_pipeline.data import delta
from ecdctr_pipeline.core.errors import DeltaError
from ecdctr_pipeline.data.store import open_store


def _t(dts, xs):
    return pa.table({"dt": dts, "x": xs})


def test_replace_partitions_and_read(local_store_settings):
    store = open_store(local_store_settings)
    r = delta.write(store, "raw/ad", _t(["2026-01-01", "2026-01-02"], [1, 2]))
    assert (r.version, r.rows, r.partitions) == (0, 2, ("2026-01-01", "2026-01-02"))
    r = delta.write(store, "raw/ad", _t(["2026-01-02", "2026-01-02"], [20, 21]))
    table, version = delta.read(store, "raw/ad")
    assert version == 1
    assert sorted(zip(table["dt"].to_pylist(), table["x"].to_pylist())) == [
        ("2026-01-01", 1), ("2026-01-02", 20), ("2026-01-02", 21)]
    only, _ = delta.read(store, "raw/ad", partitions=["2026-01-01"])
    assert only["x"].to_pylist() == [1]
    old, v0 = delta.read(store, "raw/ad", version=0)
    assert v0 == 0 and sorted(old["x"].to_pylist()) == [1, 2]
    assert delta.partitions(store, "raw/ad") == ["2026-01-01", "2026-01-02"]


def test_app_transaction_is_not_committed_twice(local_store_settings):
    store = open_store(local_store_settings)
    delta.write(store, "raw/ad", _t(["2026-01-01"], [1]), mode="append", txn=("ingest:2026-01-01", 1))
    again = delta.write(store, "raw/ad", _t(["2026-01-01"], [1]), mode="append", txn=("ingest:2026-01-01", 1))
    assert again.skipped
    assert delta.read(store, "raw/ad")[0].num_rows == 1
    assert delta.committed_txn_version(store, "raw/ad", "ingest:2026-01-01") == 1
    newer = delta.write(store, "raw/ad", _t(["2026-01-01"], [2]), mode="append", txn=("ingest:2026-01-01", 2))
    assert not newer.skipped and delta.read(store, "raw/ad")[0].num_rows == 2


def test_errors(local_store_settings):
    store = open_store(local_store_settings)
    with pytest.raises(DeltaError, match="not found"):
        delta.read(store, "raw/none")
    with pytest.raises(DeltaError, match="0 rows"):
        delta.write(store, "raw/ad", _t([], []).cast(pa.schema([("dt", pa.string()), ("x", pa.int64())])))
    with pytest.raises(DeltaError, match="null"):
        delta.write(store, "raw/ad", pa.table({"dt": pa.array([None], pa.string()), "x": [1]}))
    delta.write(store, "raw/ad", _t(["2026-01-01"], [1]))
    with pytest.raises(DeltaError, match="write to .*raw/ad failed"):
        delta.write(store, "raw/ad", pa.table({"dt": ["2026-01-01"], "x": ["not-an-int"]}))
    assert delta.version(store, "raw/ad") == 0  # the failed write changed nothing
