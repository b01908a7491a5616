"""``ecdctr ingest``: load a user's Parquet/CSV impressions into ``raw/{natural,ad}``.

Everything is validated before anything is written; bad input raises
:class:`IngestError` with one line naming the column, the count and a few example rows, and
the table version stays unchanged. Good input replaces the ``dt`` partitions it covers, so
re-ingesting a day never duplicates it. The simulator writes through :func:`write_raw` too.

Checks, in order: readable files, missing/extra columns, types (integers, ISO-8601
timestamps; naive timestamps are read as UTC), null keys/labels/times, ``click`` in {0,1},
categorical values within the contract's vocabulary, unparseable or future ``event_time``
(later than ``now``), duplicate impressions (same user, item and event_time).
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ecdctr_pipeline.data import delta
from ecdctr_pipeline.core import paths
from ecdctr_pipeline.core.errors import EcdctrError
from ecdctr_pipeline.core.schema import IMPRESSION_KEY, PARTITION, Column, FeatureSchema
from ecdctr_pipeline.data.store import ArtifactStore

log = logging.getLogger(__name__)

EXAMPLES = 3
MAX_EVENT_AGE_DAYS = 3650  # ingest refuses impressions older than this before --now


class IngestError(EcdctrError):
    """Input does not conform to the raw-log contract; nothing was written."""


@dataclass(frozen=True)
class IngestResult:
    domain: str
    rows: int
    partitions: tuple[str, ...]
    version: int
    files: int


# ------------------------------------------------------------------ reading
def input_files(path: str | Path) -> list[Path]:
    p = Path(path)
    if p.is_file():
        files = [p]
    elif p.is_dir():
        files = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in (".parquet", ".csv")
                       and not f.name.startswith((".", "_")))
    else:
        raise IngestError(f"input path not found: {p}")
    if not files:
        raise IngestError(f"no .parquet or .csv files under {p}")
    bad = [f for f in files if f.suffix.lower() not in (".parquet", ".csv")]
    if bad:
        raise IngestError(f"unsupported input file {bad[0]}: expected .parquet or .csv")
    kinds = sorted({f.suffix.lower() for f in files})
    if len(kinds) > 1:
        raise IngestError(f"{p} mixes {' and '.join(kinds)} files: one format per ingest (CSV columns are read "
                          "as text, Parquet's keep their types)")
    return files


def _read_one(f: Path) -> pa.Table:
    try:
        if f.suffix.lower() == ".csv":
            import csv

            import pyarrow.csv as pcsv

            with open(f, newline="", encoding="utf-8") as fh:
                header = next(csv.reader(fh), [])
            return pcsv.read_csv(f, convert_options=pcsv.ConvertOptions(
                column_types={n: pa.string() for n in header}, strings_can_be_null=True))
        import pyarrow.parquet as pq

        return pq.read_table(f)
    except UnicodeDecodeError as exc:
        raise IngestError(f"cannot read {f}: not UTF-8 text (byte {exc.start} of its header)") from None
    except (pa.ArrowInvalid, OSError) as exc:
        raise IngestError(f"cannot read {f}: {' '.join(str(exc).split())[:200]}") from None


def read_input(path: str | Path) -> tuple[pa.Table, list[str]]:
    """All input files as one table, plus a per-row label ``file:row`` for messages."""
    files = input_files(path)
    tables, labels = [], []
    first_cols: list[str] | None = None
    for f in files:
        t = _read_one(f)
        dup = sorted({n for n in t.column_names if t.column_names.count(n) > 1})
        if dup:
            raise IngestError(f"{f.name} has duplicate column(s) {', '.join(dup)}")
        if first_cols is None:
            first_cols = t.column_names
        elif sorted(t.column_names) != sorted(first_cols):
            raise IngestError(f"{f.name} has columns {sorted(t.column_names)} unlike {files[0].name}")
        tables.append(t.select(first_cols))
        labels.extend(f"{f.name}:{i + (2 if f.suffix.lower() == '.csv' else 1)}" for i in range(t.num_rows))
    try:
        table = pa.concat_tables(tables, promote_options="permissive")
    except pa.ArrowInvalid as exc:
        raise IngestError(f"input files under {path} disagree on column types: {exc}") from None
    return table, labels


# ------------------------------------------------------------------ validation
class _Problems:
    def __init__(self, labels: list[str]):
        self.labels = labels
        self.items: list[str] = []

    def add(self, column: str, what: str, mask: np.ndarray, values: pa.Array | None = None) -> None:
        idx = np.flatnonzero(mask)
        if not len(idx):
            return
        shown = []
        for i in idx[:EXAMPLES]:
            v = "" if values is None else f" ({column}={_short(values[int(i)].as_py())})"
            shown.append(f"{self.labels[i]}{v}")
        self.items.append(f"column {column}: {len(idx)} row(s) {what}, e.g. {'; '.join(shown)}")

    def raise_if_any(self, domain: str) -> None:
        if self.items:
            more = f" (+{len(self.items) - 1} more problem(s))" if len(self.items) > 1 else ""
            raise IngestError(f"{domain} input rejected: {self.items[0]}{more}")


def _short(value, limit: int = 40) -> str:
    """An example value for a message: its repr, cut to ``limit`` characters."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text)} characters)"


_INT_RE = r"^\s*[-+]?\d+\s*$"


def _to_int(col: pa.ChunkedArray, c: Column, probs: _Problems) -> pa.Array:
    arr = col.combine_chunks()
    valid = ~np.asarray(arr.is_null().to_numpy(zero_copy_only=False))
    if pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type):
        ok = np.asarray(pc.fill_null(pc.match_substring_regex(arr, _INT_RE), True).to_numpy(zero_copy_only=False))
        bad = valid & ~ok
        probs.add(c.name, f"not an integer ({c.type})", bad, arr)
        arr = pc.if_else(pa.array(bad), pa.nulls(len(arr), arr.type), arr)
        arr = pc.utf8_trim_whitespace(arr)
        # a long number may not fit int64 (the cast below would raise): checked one by one
        long = np.asarray(pc.fill_null(pc.greater(pc.utf8_length(arr), 18), False).to_numpy(zero_copy_only=False))
        fits = np.ones(len(arr), bool)
        for i in np.flatnonzero(long):
            fits[i] = _fits_int64(arr[int(i)].as_py())
        probs.add(c.name, f"out of range for {c.type}", valid & ~fits, arr)
        arr = pc.cast(pc.if_else(pa.array(~fits), pa.nulls(len(arr), arr.type), arr), pa.int64())
        valid = valid & fits
    elif pa.types.is_floating(arr.type):
        vals = np.asarray(arr.to_numpy(zero_copy_only=False), dtype=float)
        bad = valid & ~(np.isfinite(vals) & (np.floor(vals) == vals))
        probs.add(c.name, f"not an integer ({c.type})", bad, arr)
        huge = valid & ~bad & (np.abs(np.nan_to_num(vals)) >= 2.0 ** 63)
        probs.add(c.name, f"out of range for {c.type}", huge, arr)
        bad |= huge
        arr = pa.array(np.where(bad | ~valid, 0, vals).astype(np.int64), mask=bad | ~valid)
    elif pa.types.is_integer(arr.type) or pa.types.is_boolean(arr.type):
        if pa.types.is_uint64(arr.type):  # above int64's range: out of range, not a crash of the cast
            big = np.asarray(pc.fill_null(pc.greater(arr, pa.scalar(np.iinfo(np.int64).max, pa.uint64())),
                                          False).to_numpy(zero_copy_only=False))
            probs.add(c.name, f"out of range for {c.type}", big, arr)
            arr = pc.if_else(pa.array(big), pa.nulls(len(arr), arr.type), arr)
            valid = valid & ~big
        arr = pc.cast(arr, pa.int64())
    else:
        probs.add(c.name, f"of type {arr.type}, expected {c.type}", valid, None)
        return pa.nulls(len(arr), c.arrow)
    info = np.iinfo(c.arrow.to_pandas_dtype())
    vals = np.asarray(pc.fill_null(arr, 0).to_numpy(zero_copy_only=False))
    over = valid & ((vals < info.min) | (vals > info.max))
    probs.add(c.name, f"out of range for {c.type}", over, arr)
    if c.vocab_size is not None:
        outside = valid & ~over & ((vals < 0) | (vals >= c.vocab_size))
        if c.role != "label":
            probs.add(c.name, f"outside the vocabulary 0..{c.vocab_size - 1}", outside, arr)
    vals = np.where(over, 0, vals)
    return pa.array(vals.astype(c.arrow.to_pandas_dtype()), mask=~valid | over)


def _fits_int64(text) -> bool:
    try:
        return np.iinfo(np.int64).min <= int(text) <= np.iinfo(np.int64).max
    except (TypeError, ValueError):
        return False


def _to_timestamp(col: pa.ChunkedArray, c: Column, probs: _Problems) -> pa.Array:
    arr = col.combine_chunks()
    valid = ~np.asarray(arr.is_null().to_numpy(zero_copy_only=False))
    if pa.types.is_timestamp(arr.type):
        out = pc.cast(arr, pa.timestamp("us", tz=arr.type.tz)) if arr.type.tz else pc.assume_timezone(
            pc.cast(arr, pa.timestamp("us")), "UTC")
        return pc.cast(out, c.arrow)
    if pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type):
        import pandas as pd

        parsed = pd.to_datetime(pd.Series(arr.to_pylist(), dtype="object"), utc=True, errors="coerce",
                                format="ISO8601")
        bad = valid & parsed.isna().to_numpy()
        probs.add(c.name, "not an ISO-8601 timestamp", bad, arr)
        return pa.array(parsed.dt.as_unit("us"), type=c.arrow)
    probs.add(c.name, f"of type {arr.type}, expected a timestamp", valid, None)
    return pa.nulls(len(arr), c.arrow)


def rename_sources(table: pa.Table, schema: FeatureSchema, *, domain: str) -> pa.Table:
    """The input's columns under the schema's names (``sources`` maps a column to its name in
    ingested files). An input holding both a source name and the column it maps to is refused."""
    renames = {schema.source_of(n): n for n in schema.names if schema.source_of(n) != n}
    if not renames:
        return table
    names = table.column_names
    both = sorted(n for s, n in renames.items() if s in names and n in names and n not in renames)
    if both:
        raise IngestError(f"{domain} input rejected: column(s) {', '.join(both)} present under both their own "
                          "name and the name the schema's sources give them")
    return table.rename_columns([renames.get(n, n) for n in names])


def validate(table: pa.Table, labels: list[str] | None, *, now: dt.datetime, domain: str,
             schema: FeatureSchema) -> pa.Table:
    """Check ``table`` against ``schema``; return it typed, ordered by time, with ``dt``."""
    labels = labels or [f"row {i + 1}" for i in range(table.num_rows)]
    names = set(table.column_names)
    wanted = schema.names
    missing = [n for n in wanted if n not in names]
    extra = sorted(names - set(wanted))

    def shown(n: str) -> str:  # the name the input should use
        src = schema.source_of(n)
        return n if src == n else f"{src} ({n})"

    if missing:
        raise IngestError(f"{domain} input rejected: missing column(s) {', '.join(shown(n) for n in missing)} "
                          f"(feature schema {schema.identity.label})")
    if extra:
        raise IngestError(f"{domain} input rejected: unexpected column(s) {', '.join(extra)} "
                          f"(feature schema {schema.identity.label} has {', '.join(shown(n) for n in wanted)})")
    if table.num_rows == 0:
        raise IngestError(f"{domain} input rejected: no rows")
    probs = _Problems(labels)
    cols: dict[str, pa.Array] = {}
    for c in schema.columns:
        if c.role == "time":
            cols[c.name] = _to_timestamp(table.column(c.name), c, probs)
        else:
            cols[c.name] = _to_int(table.column(c.name), c, probs)
    for c in schema.columns:
        if c.role in ("time", "key", "label"):
            nulls = np.asarray(table.column(c.name).combine_chunks().is_null().to_numpy(zero_copy_only=False))
            probs.add(c.name, "null", nulls)
    click = cols["click"]
    cv = np.asarray(pc.fill_null(pc.cast(click, pa.int64()), 0).to_numpy(zero_copy_only=False))
    probs.add("click", "outside {0,1}", ~np.asarray(click.is_null().to_numpy(zero_copy_only=False)) & (cv != 0) & (cv != 1),
              click)
    et = cols["event_time"]
    now_us = int(now.astimezone(dt.timezone.utc).timestamp() * 1_000_000)
    ev = np.asarray(pc.fill_null(pc.cast(et, pa.int64()), 0).to_numpy(zero_copy_only=False))
    present = ~np.asarray(et.is_null().to_numpy(zero_copy_only=False))
    probs.add("event_time", f"in the future (after {now.isoformat()})", present & (ev > now_us), et)
    # a year-1 or epoch-0 time is a broken export, not history: it would create a partition that
    # no window reads and break every later extraction's history
    oldest = now - dt.timedelta(days=MAX_EVENT_AGE_DAYS)
    probs.add("event_time", f"more than {MAX_EVENT_AGE_DAYS // 365} years before --now (before {oldest.date()})",
              present & (ev < int(oldest.astimezone(dt.timezone.utc).timestamp() * 1_000_000)), et)
    probs.raise_if_any(domain)

    typed = pa.table(cols, schema=pa.schema([pa.field(c.name, c.arrow) for c in schema.columns]))
    keys = typed.select(list(IMPRESSION_KEY)).append_column("__i", pa.array(np.arange(typed.num_rows)))
    grouped = keys.group_by(list(IMPRESSION_KEY)).aggregate([("__i", "count"), ("__i", "min")])
    dup_groups = grouped.filter(pc.greater(grouped["__i_count"], 1))
    if dup_groups.num_rows:
        first_rows = set(dup_groups["__i_min"].to_pylist())
        joined = keys.join(dup_groups.select(list(IMPRESSION_KEY)), list(IMPRESSION_KEY), join_type="inner")
        idx = np.array(sorted(set(joined["__i"].to_pylist()) - first_rows))
        mask = np.zeros(typed.num_rows, bool)
        mask[idx] = True
        probs.add("user_id,item_id,event_time", "duplicate an earlier impression", mask)
        probs.raise_if_any(domain)
    day = pc.strftime(typed["event_time"], format="%Y-%m-%d", locale="C")
    typed = typed.append_column(PARTITION, pc.cast(day, pa.string()))
    return typed.sort_by([("event_time", "ascending"), ("user_id", "ascending"), ("item_id", "ascending")])


# ------------------------------------------------------------------ writing
def write_raw(store: ArtifactStore, domain: str, table: pa.Table, *, schema: FeatureSchema) -> delta.WriteResult:
    """Replace the ``dt`` partitions covered by a validated table in ``raw/<domain>`` (a table of
    another feature schema is refused)."""
    return delta.write(store, paths.raw_table(domain), table, mode="replace_partitions", feature_schema=schema)


def ingest(store: ArtifactStore, domain: str, path: str | Path, *, now: dt.datetime,
           schema: FeatureSchema) -> IngestResult:
    table = paths.raw_table(domain)
    delta.require_schema(store, table, schema, who=f"ingest {domain}")  # before reading any input
    raw, labels = read_input(path)
    typed = validate(rename_sources(raw, schema, domain=domain), labels, now=now, domain=domain, schema=schema)
    res = write_raw(store, domain, typed, schema=schema)
    from ecdctr_pipeline.data import empty_days

    for day in empty_days.forget(store, domain, res.partitions):  # the data wins over an empty-day record
        log.warning("raw/%s: %s was recorded as empty; its record is removed (rows were ingested for it)", domain, day)
    return IngestResult(domain, typed.num_rows, res.partitions, res.version, len(input_files(path)))
