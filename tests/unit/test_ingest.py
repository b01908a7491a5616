"""Ingest validates everything before writing; each bad-input class leaves the table unchanged."""

import datetime as dt

import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest

from ecdctr_pipeline.data import delta
from ecdctr_pipeline.app.main import main
from ecdctr_pipeline.data.ingest import IngestError, ingest, validate
from ecdctr_pipeline.core.schema import DEFAULT_SCHEMA
from ecdctr_pipeline.data.store import open_store

NOW = dt.datetime(2026, 11, 27, 12, tzinfo=dt.timezone.utc)


def rows(n=6, day="2026-11-20"):
    out = []
    for i in range(n):
        out.append({"event_time": f"{day}T0{i}:00:00Z", "user_id": str(i % 3), "item_id": str(10 + i),
                    "category_id": "1", "click": str(i % 2), "user_age": "2", "user_gender": "1", "user_city": "5",
                    "item_brand": "7", "item_price": "3", "hour": str(i), "weekday": "4", "position": "0",
                    "device": "1"})
    return out


def write_csv(path, records):
    cols = list(records[0].keys())
    table = pa.table({c: [r[c] for r in records] for c in cols})
    pcsv.write_csv(table, path)
    return path


@pytest.fixture
def store_with_day(local_store_settings, tmp_path):
    store = open_store(local_store_settings)
    ingest(store, "natural", write_csv(tmp_path / "good.csv", rows()), now=NOW, schema=DEFAULT_SCHEMA)
    return store


def _bad(records, **change):
    out = [dict(r) for r in records]
    for idx_col, value in change.items():
        idx, col = idx_col.split("__")
        out[int(idx.lstrip("r"))][col] = value
    return out


@pytest.mark.parametrize("mutate, message", [
    pytest.param(lambda r: [{k: v for k, v in x.items() if k != "user_city"} for x in r],
                 "missing column(s) user_city", id="missing-column"),
    pytest.param(lambda r: [dict(x, extra="1") for x in r], "unexpected column(s) extra", id="extra-column"),
    pytest.param(lambda r: _bad(r, r2__item_id="abc"), "column item_id: 1 row(s) not an integer", id="wrong-type"),
    pytest.param(lambda r: _bad(r, r1__user_id=""), "column user_id: 1 row(s) null", id="null-id"),
    pytest.param(lambda r: _bad(r, r3__click="2"), "column click: 1 row(s) outside {0,1}", id="click-range"),
    pytest.param(lambda r: _bad(r, r0__event_time="yesterday"), "column event_time: 1 row(s) not an ISO-8601",
                 id="unparseable-time"),
    pytest.param(lambda r: _bad(r, r4__event_time="2027-01-01T00:00:00Z"), "event_time: 1 row(s) in the future",
                 id="future-time"),
    pytest.param(lambda r: _bad(r, r4__event_time="0001-01-01T00:00:00Z", r5__event_time="1970-01-01T00:00:00Z"),
                 "event_time: 2 row(s) more than 10 years before --now", id="far-past-time"),
    pytest.param(lambda r: r + [dict(r[2])], "1 row(s) duplicate an earlier impression", id="duplicate"),
    pytest.param(lambda r: _bad(r, r5__hour="24"), "column hour: 1 row(s) outside the vocabulary 0..23",
                 id="out-of-vocabulary"),
    pytest.param(lambda r: _bad(r, r5__position="300"), "column position: 1 row(s) out of range for int8",
                 id="overflow"),
])
def test_bad_input_rejected_table_unchanged(store_with_day, tmp_path, mutate, message, capsys):
    before = delta.version(store_with_day, "raw/natural")
    snapshot = delta.read(store_with_day, "raw/natural")[0]
    path = write_csv(tmp_path / "bad.csv", mutate(rows(day="2026-11-21")))
    with pytest.raises(IngestError) as exc:
        ingest(store_with_day, "natural", path, now=NOW, schema=DEFAULT_SCHEMA)
    msg = str(exc.value)
    assert message in msg and "\n" not in msg
    assert delta.version(store_with_day, "raw/natural") == before
    assert delta.read(store_with_day, "raw/natural")[0].equals(snapshot)


def test_error_names_example_rows(tmp_path):
    recs = _bad(rows(), r3__click="7")
    path = write_csv(tmp_path / "x.csv", recs)
    from ecdctr_pipeline.data.ingest import read_input

    table, labels = read_input(path)
    with pytest.raises(IngestError, match=r"e\.g\. x\.csv:5 \(click=7\)"):
        validate(table, labels, now=NOW, domain="ad", schema=DEFAULT_SCHEMA)


def test_reingest_replaces_day_without_duplicates(store_with_day, tmp_path):
    assert delta.read(store_with_day, "raw/natural")[0].num_rows == 6
    ingest(store_with_day, "natural", write_csv(tmp_path / "again.csv", rows()), now=NOW, schema=DEFAULT_SCHEMA)
    assert delta.read(store_with_day, "raw/natural")[0].num_rows == 6
    ingest(store_with_day, "natural", write_csv(tmp_path / "next.csv", rows(4, "2026-11-21")), now=NOW, schema=DEFAULT_SCHEMA)
    table = delta.read(store_with_day, "raw/natural")[0]
    assert table.num_rows == 10 and sorted(set(table["dt"].to_pylist())) == ["2026-11-20", "2026-11-21"]


def test_parquet_folder_typed_and_naive_timestamps_are_utc(local_store_settings, tmp_path):
    store = open_store(local_store_settings)
    folder = tmp_path / "in"
    folder.mkdir()
    recs = rows(4)
    table = pa.table({
        "event_time": pa.array([dt.datetime(2026, 11, 20, i) for i in range(4)], pa.timestamp("ms")),
        **{c.name: pa.array([int(r[c.name]) for r in recs], pa.int64()) for c in DEFAULT_SCHEMA.columns if c.name != "event_time"},
    })
    pq.write_table(table.slice(0, 2), folder / "a.parquet")
    pq.write_table(table.slice(2), folder / "b.parquet")
    r = ingest(store, "ad", folder, now=NOW, schema=DEFAULT_SCHEMA)
    assert (r.rows, r.files, r.partitions) == (4, 2, ("2026-11-20",))
    got = delta.read(store, "raw/ad")[0]
    assert got.schema.field("event_time").type == pa.timestamp("us", tz="UTC")
    assert got.schema.field("click").type == pa.int8()
    assert got["event_time"][0].as_py() == dt.datetime(2026, 11, 20, tzinfo=dt.timezone.utc)


def test_cli_ingest_bad_input_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ECDCTR_STORE", f"file://{tmp_path}/store")
    path = write_csv(tmp_path / "bad.csv", _bad(rows(), r1__click="-1"))
    assert main(["ingest", "--domain", "ad", "--input", str(path), "--now", "2026-11-27T00:00:00"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("ecdctr: error: ad input rejected: column click")
    assert not (tmp_path / "store" / "raw").exists()
    assert main(["ingest", "--domain", "ad", "--input", str(tmp_path / "nope")]) == 2
    assert "input path not found" in capsys.readouterr().err


def _typed(day="2026-11-21", **replace):
    """The good rows as a typed Parquet table, with columns replaced."""
    t = validate(pa.table({k: [r[k] for r in rows(day=day)] for k in rows()[0]}), None, now=NOW,
                 domain="natural", schema=DEFAULT_SCHEMA).drop_columns(["dt"])
    for name, arr in replace.items():
        t = t.set_column(t.schema.get_field_index(name), name, arr)
    return t


def _parquet(tmp_path, **replace):
    pq.write_table(_typed(**replace), tmp_path / "bad.parquet")
    return tmp_path / "bad.parquet"


def _csv_text(tmp_path, edit):
    src = write_csv(tmp_path / "src.csv", rows(day="2026-11-21"))
    (tmp_path / "bad.csv").write_text(edit(src.read_text()))
    return tmp_path / "bad.csv"


def _mixed(tmp_path):
    (tmp_path / "mixed").mkdir()
    write_csv(tmp_path / "mixed" / "a.csv", rows(day="2026-11-21"))
    pq.write_table(_typed(), tmp_path / "mixed" / "b.parquet")
    return tmp_path / "mixed"


@pytest.mark.parametrize("make, message", [
    pytest.param(lambda p: _parquet(p, user_id=pa.array([1, 2, 2**63 + 5, 1, 2, 0], pa.uint64())),
                 "column user_id: 1 row(s) out of range for int64", id="uint64-above-int64"),
    pytest.param(lambda p: _parquet(p, item_brand=pa.array(["x" * 100_000] * 6)),
                 "column item_brand: 6 row(s) not an integer (int32), e.g. bad.parquet:1 (item_brand='xxxx",
                 id="100kb-string"),
    pytest.param(lambda p: _parquet(p, item_id=pa.array([1e30, 1, 2, 3, 4, 5])),
                 "column item_id: 1 row(s) out of range for int64", id="huge-float"),
    pytest.param(lambda p: _csv_text(p, lambda t: t.replace('"0","10"', '"0","99999999999999999999999"', 1)),
                 "column item_id: 1 row(s) out of range for int64", id="int64-overflow-text"),
    pytest.param(lambda p: _csv_text(p, lambda t: "\n".join(ln + ("," + ('"user_id"' if i == 0 else '"5"'))
                                                          for i, ln in enumerate(t.splitlines())) + "\n"),
                 "bad.csv has duplicate column(s) user_id", id="duplicate-column-names"),
    pytest.param(_mixed, "mixes .csv and .parquet files", id="mixed-folder"),
])
def test_bad_files_are_one_short_line_and_change_nothing(store_with_day, tmp_path, make, message):
    before = delta.version(store_with_day, "raw/natural")
    path = make(tmp_path)
    with pytest.raises(IngestError) as exc:
        ingest(store_with_day, "natural", path, now=NOW, schema=DEFAULT_SCHEMA)
    msg = str(exc.value)
    assert message in msg and "\n" not in msg and len(msg) < 1000, msg[:300]
    assert delta.version(store_with_day, "raw/natural") == before
