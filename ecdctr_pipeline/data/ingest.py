"""``ecdctr ingest``: load a user's Parquet/CSV impressions into ``raw/{natural,ad}``.

Everything is validated before anything is written; bad input raises :class:`IngestError` with
one line naming the column, the count and a few example rows (``file:line``), and the table
version stays unchanged. Good input replaces the ``dt`` days it covers (re-ingesting a day never
duplicates it) in one commit. The simulator writes through :func:`write_raw` too.

Checks, in order: readable files, missing/extra columns, types (integers, ISO-8601
timestamps; naive timestamps are read as UTC), null keys/labels/times, ``click`` in {0,1},
categorical values within the contract's vocabulary, unparseable or future ``event_time``
(later than ``now``), duplicate impressions (same user, item and event_time), then the days.

**Which stored days an input may replace.** A day is replaced whole by the input's rows of it,
so an input holding a stray row of a neighbouring day (an export cut at local midnight, naive
local times read as UTC and pushed past midnight) would replace that stored day by that row.
The rule:

* without ``--days``, ingest replaces a stored day only by at least as many rows as it stores.
  An input holding fewer rows of a stored day than the day has is refused (exit 2, nothing
  written), naming the day, both counts, its first row and the fixes;
* ``--days D1,D2|START..END`` declares the days the input is: they are replaced whatever their
  counts (a corrected day with fewer rows), and every row must be of one of them (else refused,
  naming the first row outside, ``file:line``, and its day); a declared day without rows is
  refused (a day without impressions is recorded with ``--empty-day``);
* ``--merge``: rows of days not declared (all days, without ``--days``) are merged into the
  stored day by impression key (an input row replaces the stored row of the same user, item and
  time; the others are kept) instead of replacing it; a day not stored yet is added.

Each replaced or merged day is reported in one line (``raw/ad 2026-11-20: 169 rows replaced by
171``, :meth:`IngestResult.lines`) and in :attr:`IngestResult.days`. The rule is checked again
under the table's writer lease against the table as it is then (another writer may have
committed meanwhile); a day being merged that changed meanwhile refuses the ingest.

**Memory.** The input is read in record batches (CSV blocks of :data:`CSV_BLOCK_BYTES`, Parquet
batches of :data:`BATCH_ROWS` rows; Arrow reads a Parquet row group's column chunks whole), each
validated and spilled by day into Parquet files in a scratch folder, with its input position
(file, row) for messages: no per-row label is kept, examples are labelled from the position.
Then, day by day: the duplicate check (one day's keys and positions sorted in NumPy, about 64
bytes a row at its peak: 11 MB for a 170 000-row day, 320 MB for 5 M rows that are all one day)
and the day's final Parquet file, written in row groups of :data:`ROW_GROUP_ROWS` rows and placed
under the table; one commit adds them all (:class:`~ecdctr_pipeline.data.delta.StagedFiles`).
What grows with the input: the scratch folder (about the size of the written Parquet, on disk)
and a few counters per day. In memory: one batch, :data:`MAX_OPEN_SPILLS` open spill writers,
one day's keys (a merged day: its stored and input rows), one row group of the day being
written. Peak RSS of ``ecdctr ingest`` (``make bench-memory``, README "Benchmarks"): 263 / 282 /
334 MB at 1x / 4x / 8x an 18 MB CSV (30 days of the ``small`` natural log), 337 MB for 5.0 M rows
(330 MB CSV); the in-memory ingest before took 474 / 1 192 / 2 003 MB and 4 153 MB. Rows keep
their input order within a day (every reader orders by time itself).
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import logging
import shutil
import time
import uuid
from collections import OrderedDict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ecdctr_pipeline.core import paths
from ecdctr_pipeline.core.errors import EcdctrError
from ecdctr_pipeline.core.schema import IMPRESSION_KEY, PARTITION, Column, FeatureSchema
from ecdctr_pipeline.data import delta
from ecdctr_pipeline.data.store import ArtifactStore

log = logging.getLogger(__name__)

EXAMPLES = 3
MAX_EVENT_AGE_DAYS = 3650  # ingest refuses impressions older than this before --now
BATCH_ROWS = 65_536  # rows of a Parquet record batch
CSV_BLOCK_BYTES = 2 << 20  # bytes of a CSV block (about 30 000 rows of the default schema)
ROW_GROUP_ROWS = 131_072  # rows of a row group of the written files
MAX_OPEN_SPILLS = 32  # days whose spill file stays open at once (more: the oldest is closed)
POS = "__pos"  # a spilled row's input position: file index << POS_BITS | row index in the file
POS_BITS = 40


class IngestError(EcdctrError):
    """Input does not conform to the raw-log contract; nothing was written."""


@dataclass(frozen=True)
class DayChange:
    """What an ingest did to one day of the raw table."""

    day: str
    rows: int  # the input's rows of the day
    stored: int | None  # rows the table held for the day before (None: a new day)
    after: int  # rows the day holds after the ingest
    action: str  # "added", "replaced" or "merged"

    def line(self, domain: str) -> str:
        where = f"raw/{domain} {self.day}"
        if self.action == "merged":
            return f"{where}: {self.stored} rows merged with {self.rows} input rows: {self.after} now"
        if self.action == "replaced":
            return f"{where}: {self.stored} rows replaced by {self.after}"
        return f"{where}: new day, {self.after} rows"

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class IngestResult:
    domain: str
    rows: int
    partitions: tuple[str, ...]
    version: int
    files: int
    days: tuple[DayChange, ...] = ()

    @property
    def replaced(self) -> tuple[DayChange, ...]:
        """The days that existed before (replaced or merged)."""
        return tuple(d for d in self.days if d.stored is not None)

    def lines(self) -> list[str]:
        """One line per replaced or merged day."""
        return [d.line(self.domain) for d in self.replaced]


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


@dataclass(frozen=True)
class _Source:
    path: Path
    columns: tuple[str, ...]  # as the file names them, in its order

    @property
    def is_csv(self) -> bool:
        return self.path.suffix.lower() == ".csv"

    @property
    def first_line(self) -> int:  # the line (CSV, after its header) or row (Parquet) of row 0
        return 2 if self.is_csv else 1


def _cannot_read(f: Path, exc: BaseException) -> IngestError:
    return IngestError(f"cannot read {f}: {' '.join(str(exc).split())[:200]}")


def _columns_of(f: Path) -> tuple[str, ...]:
    try:
        if f.suffix.lower() == ".csv":
            with open(f, newline="", encoding="utf-8") as fh:
                return tuple(next(csv.reader(fh), []))
        import pyarrow.parquet as pq

        return tuple(pq.ParquetFile(f).schema_arrow.names)
    except UnicodeDecodeError as exc:
        raise IngestError(f"cannot read {f}: not UTF-8 text (byte {exc.start} of its header)") from None
    except (pa.ArrowInvalid, OSError, csv.Error) as exc:
        raise _cannot_read(f, exc) from None


def _sources(path: str | Path) -> list[_Source]:
    """The input files with their columns: duplicate names and files disagreeing on the column
    set are refused before any row is read."""
    files = input_files(path)
    out: list[_Source] = []
    for f in files:
        cols = _columns_of(f)
        dup = sorted({n for n in cols if cols.count(n) > 1})
        if dup:
            raise IngestError(f"{f.name} has duplicate column(s) {', '.join(dup)}")
        if out and sorted(cols) != sorted(out[0].columns):
            raise IngestError(f"{f.name} has columns {sorted(cols)} unlike {files[0].name}")
        out.append(_Source(f, cols))
    return out


def _batches(src: _Source, columns: tuple[str, ...]) -> Iterator[pa.Table]:
    """``src``'s rows as tables of one record batch each, columns in the order ``columns``."""
    f = src.path
    try:
        if src.is_csv:
            import pyarrow.csv as pcsv

            # a Python file object: given a path, Arrow reads the file ahead of the parser as fast as
            # the disk allows (a 49 MB CSV held ~60 MB); through a Python file it reads block by block
            with open(f, "rb") as fh:
                reader = pcsv.open_csv(fh, read_options=pcsv.ReadOptions(block_size=CSV_BLOCK_BYTES),
                                       convert_options=pcsv.ConvertOptions(
                                           column_types={n: pa.string() for n in src.columns},
                                           strings_can_be_null=True))
                for b in reader:
                    yield pa.Table.from_batches([b]).select(list(columns))
            return
        import pyarrow.parquet as pq

        for b in pq.ParquetFile(f).iter_batches(batch_size=BATCH_ROWS):
            yield pa.Table.from_batches([b]).select(list(columns))
    except UnicodeDecodeError as exc:
        raise IngestError(f"cannot read {f}: not UTF-8 text (byte {exc.start})") from None
    except (pa.ArrowInvalid, OSError) as exc:
        raise _cannot_read(f, exc) from None


def _label(sources: list[_Source], pos: int) -> str:
    src = sources[pos >> POS_BITS]
    return f"{src.path.name}:{(pos & ((1 << POS_BITS) - 1)) + src.first_line}"


def read_input(path: str | Path) -> tuple[pa.Table, list[str]]:
    """All input files as one table, plus a per-row label ``file:row`` for messages (small inputs:
    :func:`ingest` streams instead)."""
    sources = _sources(path)
    cols = sources[0].columns
    tables, labels = [], []
    for s in sources:
        n = 0
        for t in _batches(s, cols):
            tables.append(t)
            n += t.num_rows
        labels.extend(f"{s.path.name}:{i + s.first_line}" for i in range(n))
    try:
        table = pa.concat_tables(tables, promote_options="permissive") if tables else pa.table(
            {c: pa.array([], pa.string()) for c in cols})
    except pa.ArrowInvalid as exc:
        raise IngestError(f"input files under {path} disagree on column types: {exc}") from None
    return table, labels


# ------------------------------------------------------------------ validation
class _Problems:
    """Problems found so far, by (column, what): a count and the first examples. Batches report
    in the same order, so the message names the first check that failed, as on one table."""

    def __init__(self, label: Callable[[int], str] | None = None):
        self.label = label or (lambda i: f"row {i + 1}")
        self.found: dict[tuple[str, str], list] = {}  # (column, what) -> [count, examples, rank]
        self._rank = 0

    def batch(self, label: Callable[[int], str]) -> None:
        self.label, self._rank = label, 0

    def add(self, column: str, what: str, mask: np.ndarray, values: pa.Array | None = None) -> None:
        self._rank += 1
        idx = np.flatnonzero(mask)
        if not len(idx):
            return
        entry = self.found.setdefault((column, what), [0, [], self._rank])
        entry[0] += len(idx)
        entry[2] = min(entry[2], self._rank)
        for i in idx[:max(0, EXAMPLES - len(entry[1]))]:
            v = "" if values is None else f" ({column}={_short(values[int(i)].as_py())})"
            entry[1].append(f"{self.label(int(i))}{v}")

    def add_counted(self, column: str, what: str, count: int, examples: list[str]) -> None:
        self._rank += 1
        self.found[(column, what)] = [count, examples[:EXAMPLES], self._rank]

    @property
    def any(self) -> bool:
        return bool(self.found)

    def raise_if_any(self, domain: str) -> None:
        if not self.found:
            return
        items = sorted(self.found.items(), key=lambda kv: kv[1][2])
        (column, what), (count, examples, _) = items[0]
        more = f" (+{len(items) - 1} more problem(s))" if len(items) > 1 else ""
        raise IngestError(f"{domain} input rejected: column {column}: {count} row(s) {what}, "
                          f"e.g. {'; '.join(examples)}{more}")


def _short(value, limit: int = 40) -> str:
    """An example value for a message: its repr (a time as ISO-8601 text), cut to ``limit`` characters."""
    text = value.isoformat() if isinstance(value, (dt.datetime, dt.date)) else repr(value)
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


def _renamed(names, schema: FeatureSchema, *, domain: str) -> list[str]:
    renames = {schema.source_of(n): n for n in schema.names if schema.source_of(n) != n}
    names = list(names)
    if not renames:
        return names
    both = sorted(n for s, n in renames.items() if s in names and n in names and n not in renames)
    if both:
        raise IngestError(f"{domain} input rejected: column(s) {', '.join(both)} present under both their own "
                          "name and the name the schema's sources give them")
    return [renames.get(n, n) for n in names]


def rename_sources(table: pa.Table, schema: FeatureSchema, *, domain: str) -> pa.Table:
    """The input's columns under the schema's names (``sources`` maps a column to its name in
    ingested files). An input holding both a source name and the column it maps to is refused."""
    new = _renamed(table.column_names, schema, domain=domain)
    return table if new == table.column_names else table.rename_columns(new)


def _check_columns(names, schema: FeatureSchema, *, domain: str) -> None:
    names = set(names)
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


def _typed_schema(schema: FeatureSchema) -> pa.Schema:
    return pa.schema([pa.field(c.name, c.arrow) for c in schema.columns])


def _convert(table: pa.Table, probs: _Problems, *, now: dt.datetime, schema: FeatureSchema) -> pa.Table:
    """``table`` (the schema's columns) typed; problems go to ``probs`` (nothing raises here)."""
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
    return pa.table(cols, schema=_typed_schema(schema))


def _day_of(typed: pa.Table) -> pa.Array:
    return pc.cast(pc.strftime(typed["event_time"], format="%Y-%m-%d", locale="C"), pa.string())


def _later_duplicates(keys: pa.Table) -> np.ndarray:
    """Positions (column :data:`POS`) of the rows of ``keys`` repeating an earlier row's impression
    key (user, item, time), sorted. A sort of the keys in NumPy (Arrow's hash group-by keeps
    per-thread memory that grows over the days checked one by one)."""
    cols = [np.asarray(pc.cast(keys[k].combine_chunks(), pa.int64()).to_numpy(zero_copy_only=False))
            for k in IMPRESSION_KEY]
    pos = np.asarray(keys[POS].combine_chunks().to_numpy(zero_copy_only=False))
    order = np.lexsort((pos, *reversed(cols)))  # by user, item, time, then input position
    same = np.ones(len(order) - 1 if len(order) else 0, bool)
    for c in cols:
        sc = c[order]
        same &= sc[1:] == sc[:-1]
    return np.sort(pos[order][1:][same])


DUPLICATE = ("user_id,item_id,event_time", "duplicate an earlier impression")


def validate(table: pa.Table, labels: list[str] | None, *, now: dt.datetime, domain: str,
             schema: FeatureSchema) -> pa.Table:
    """Check an in-memory ``table`` against ``schema`` (the simulator's chunks); return it typed,
    ordered by time, with ``dt``. :func:`ingest` applies the same checks batch by batch."""
    _check_columns(table.column_names, schema, domain=domain)
    if table.num_rows == 0:
        raise IngestError(f"{domain} input rejected: no rows")
    probs = _Problems((lambda i: labels[i]) if labels else None)
    typed = _convert(table, probs, now=now, schema=schema)
    probs.raise_if_any(domain)
    keys = typed.select(list(IMPRESSION_KEY)).append_column(POS, pa.array(np.arange(typed.num_rows)))
    later = _later_duplicates(keys)
    if len(later):
        probs.add_counted(*DUPLICATE, len(later), [probs.label(int(i)) for i in later[:EXAMPLES]])
        probs.raise_if_any(domain)
    typed = typed.append_column(PARTITION, _day_of(typed))
    return typed.sort_by([("event_time", "ascending"), ("user_id", "ascending"), ("item_id", "ascending")])


# ------------------------------------------------------------------ the days an input may replace
def parse_days(text: str) -> tuple[str, ...]:
    """``--days``: comma-separated days and inclusive ranges ``START..END``, as sorted ISO days."""
    from ecdctr_pipeline.core.calendar import iter_days, parse_date

    out: set[str] = set()
    for item in str(text).split(","):
        item = item.strip()
        if not item:
            raise IngestError(f"--days {text!r}: an empty item (expected D1,D2 or START..END)")
        if ".." in item:
            a, b = item.split("..", 1)
            start, end = parse_date(a, what="--days start"), parse_date(b, what="--days end")
            if end < start:
                raise IngestError(f"--days {item}: {end} is before {start}")
            if (end - start).days > MAX_EVENT_AGE_DAYS:
                raise IngestError(f"--days {item}: more than {MAX_EVENT_AGE_DAYS} days")
            out.update(d.isoformat() for d in iter_days(start, end))
        else:
            out.add(parse_date(item, what="--days").isoformat())
    return tuple(sorted(out))


def _shown_days(days: tuple[str, ...]) -> str:
    return days[0] if len(days) == 1 else f"{days[0]}..{days[-1]}" if len(days) > 2 else ",".join(days)


def plan_days(day_rows: dict[str, int], stored: dict[str, int], *, declared: tuple[str, ...] | None,
              merge: bool, domain: str, first: Callable[[str], str] = lambda d: "",
              position: Callable[[str], int] = lambda d: 0) -> dict[str, str]:
    """Each input day's action (``added``, ``replaced`` or ``merged``) under the rule of the module
    docstring; raises :class:`IngestError` when the input may not be ingested. ``first(day)``
    labels the day's first input row, ``position(day)`` orders those rows as the input does."""
    table = f"raw/{domain}"
    if declared is not None:
        empty = [d for d in declared if d not in day_rows]
        if empty:
            more = f" (+{len(empty) - 1} more)" if len(empty) > 1 else ""
            raise IngestError(f"{domain} input rejected: --days names {empty[0]}{more} but the input holds no rows "
                              "of it (a day without impressions: ingest --empty-day)")
        outside = [d for d in day_rows if d not in declared]
        if outside and not merge:
            d = min(outside, key=position)
            raise IngestError(f"{domain} input rejected: {first(d)} is of {d}, outside --days {_shown_days(declared)} "
                              f"({sum(day_rows[x] for x in outside)} row(s) of {len(outside)} day(s) outside): fix "
                              "the times (naive local times are read as UTC), widen --days, or add --merge to merge "
                              "them into the stored days")
    actions: dict[str, str] = {}
    short: list[str] = []
    for d in sorted(day_rows):
        s = stored.get(d)
        if declared is not None and d in declared:
            actions[d] = "replaced" if s else "added"
        elif merge:
            actions[d] = "merged" if s else "added"
        elif s and day_rows[d] < s:
            short.append(d)
        else:
            actions[d] = "replaced" if s else "added"
    if short:
        d = short[0]
        more = f" (+{len(short) - 1} more such day(s))" if len(short) > 1 else ""
        raise IngestError(f"{domain} input rejected: it holds {day_rows[d]} row(s) of {d} (first: {first(d)}), a day "
                          f"{table} stores with {stored[d]} rows: ingest would replace that day by them{more}. If the "
                          f"input is that whole day, corrected, declare it: --days {d}; to merge the rows into the "
                          "stored day: --merge")
    return actions


# ------------------------------------------------------------------ spilling and writing
class _Spill:
    """Validated rows by day, in Parquet files of a scratch folder (at most :data:`MAX_OPEN_SPILLS`
    open at once: a day whose file was closed continues in a new one)."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.pieces: dict[str, list[Path]] = {}
        self.open: OrderedDict[str, object] = OrderedDict()

    def write(self, day: str, table: pa.Table) -> None:
        import pyarrow.parquet as pq

        w = self.open.pop(day, None)
        if w is None:
            if len(self.open) >= MAX_OPEN_SPILLS:
                self.open.popitem(last=False)[1].close()
            files = self.pieces.setdefault(day, [])
            path = self.folder / f"{day}.{len(files)}.parquet"
            files.append(path)
            w = pq.ParquetWriter(path, table.schema, compression="lz4", use_dictionary=False)
        w.write_table(table)
        self.open[day] = w

    def close(self) -> None:
        while self.open:
            self.open.popitem(last=False)[1].close()

    def batches(self, day: str, columns: list[str] | None = None) -> Iterator[pa.RecordBatch]:
        import pyarrow.parquet as pq

        for p in self.pieces.get(day, []):
            yield from pq.ParquetFile(p).iter_batches(batch_size=BATCH_ROWS, columns=columns)

    def read(self, day: str, columns: list[str] | None = None) -> pa.Table:
        import pyarrow.parquet as pq

        return pa.concat_tables([pq.read_table(p, columns=columns) for p in self.pieces.get(day, [])])


@dataclass
class _Scan:
    sources: list[_Source]
    spill: _Spill
    rows: int
    day_rows: dict[str, int]
    first_pos: dict[str, int]

    def first(self, day: str) -> str:
        return _label(self.sources, self.first_pos[day])


def _scan(sources: list[_Source], spill: _Spill, *, now: dt.datetime, domain: str, schema: FeatureSchema) -> _Scan:
    """The validating pass: every batch checked, the valid rows spilled by day. Raises the first
    problem (counts over the whole input) or duplicates; nothing is kept of an invalid input."""
    cols = sources[0].columns
    names = _renamed(cols, schema, domain=domain)
    _check_columns(names, schema, domain=domain)
    order = list(schema.names)
    probs = _Problems()
    rows = 0
    day_rows: dict[str, int] = {}
    first_pos: dict[str, int] = {}
    for fi, src in enumerate(sources):
        offset = 0
        for t in _batches(src, cols):
            n = t.num_rows
            if not n:
                continue
            base = (fi << POS_BITS) + offset
            probs.batch(lambda i, base=base: _label(sources, base + i))
            typed = _convert(t.rename_columns(names).select(order), probs, now=now, schema=schema)
            if not probs.any:  # an invalid input is only counted from its first problem on
                day = _day_of(typed)
                typed = typed.append_column(POS, pa.array(np.arange(base, base + n, dtype=np.int64)))
                days = pc.unique(day).to_pylist()
                for d in days:
                    piece = typed if len(days) == 1 else typed.filter(pc.equal(day, d))
                    spill.write(d, piece)
                    day_rows[d] = day_rows.get(d, 0) + piece.num_rows
                    first_pos.setdefault(d, int(piece[POS][0].as_py()))
            rows += n
            offset += n
    spill.close()
    probs.raise_if_any(domain)
    if rows == 0:
        raise IngestError(f"{domain} input rejected: no rows")
    # duplicates share their time, hence their day: one day's keys at a time
    count, examples = 0, np.empty(0, np.int64)
    for d in sorted(day_rows):
        later = _later_duplicates(spill.read(d, [*IMPRESSION_KEY, POS]))
        if len(later):
            count += len(later)
            examples = np.sort(np.concatenate([examples, later[:EXAMPLES]]))[:EXAMPLES]
    if count:
        probs.add_counted(*DUPLICATE, count, [_label(sources, int(p)) for p in examples])
        probs.raise_if_any(domain)
    return _Scan(sources, spill, rows, day_rows, first_pos)


def _write_day(path: Path, parts: Iterator[pa.RecordBatch | pa.Table], schema: pa.Schema) -> int:
    """One day's final Parquet file from ``parts`` (row groups of :data:`ROW_GROUP_ROWS`)."""
    import pyarrow.parquet as pq

    rows = 0
    buf: list[pa.Table] = []
    held = 0
    with pq.ParquetWriter(path, schema, compression="snappy") as w:
        for part in parts:
            t = part if isinstance(part, pa.Table) else pa.Table.from_batches([part])
            t = t.select(schema.names).cast(schema)
            buf.append(t)
            held += t.num_rows
            if held >= ROW_GROUP_ROWS:
                w.write_table(pa.concat_tables(buf), row_group_size=ROW_GROUP_ROWS)
                rows += held
                buf, held = [], 0
        if buf:
            w.write_table(pa.concat_tables(buf), row_group_size=ROW_GROUP_ROWS)
            rows += held
    return rows


def _merged_day(store: ArtifactStore, table: str, version: int, day: str, scan: _Scan,
                file_schema: pa.Schema) -> tuple[list[pa.Table], int]:
    """The stored rows of ``day`` whose impression key the input does not hold, then the input's
    rows of it (the input wins); and how many stored rows were kept."""
    stored, _ = delta.read(store, table, partitions=[day], version=version, columns=file_schema.names)
    stored = stored.select(file_schema.names).cast(file_schema)
    incoming = scan.spill.read(day).drop_columns([POS]).cast(file_schema)
    kept = stored.join(incoming.select(list(IMPRESSION_KEY)), list(IMPRESSION_KEY), join_type="left anti")
    kept = kept.select(file_schema.names)
    return [kept, incoming], kept.num_rows


# ------------------------------------------------------------------ ingest
def write_raw(store: ArtifactStore, domain: str, table: pa.Table, *, schema: FeatureSchema) -> delta.WriteResult:
    """Replace the ``dt`` partitions covered by a validated table in ``raw/<domain>`` (a table of
    another feature schema is refused)."""
    return delta.write(store, paths.raw_table(domain), table, mode="replace_partitions", feature_schema=schema)


def ingest(store: ArtifactStore, domain: str, path: str | Path, *, now: dt.datetime, schema: FeatureSchema,
           days: str | tuple[str, ...] | None = None, merge: bool = False) -> IngestResult:
    """Validate the files at ``path`` and write them to ``raw/<domain>`` in one commit (the module
    docstring: the checks, which stored days may be replaced, ``days`` and ``merge``, memory)."""
    table = paths.raw_table(domain)
    declared = parse_days(days) if isinstance(days, str) else (tuple(sorted(set(days))) if days else None)
    delta.require_schema(store, table, schema, who=f"ingest {domain}")  # before reading any input
    sources = _sources(path)
    scratch = store.scratch_dir("ecdctr-ingest-")
    staged: list[str] = []
    try:
        (scratch / "spill").mkdir()
        scan = _scan(sources, _Spill(scratch / "spill"), now=now, domain=domain, schema=schema)
        stored, version = delta.day_rows(store, table)
        actions = plan_days(scan.day_rows, stored, declared=declared, merge=merge, domain=domain, first=scan.first,
                            position=scan.first_pos.__getitem__)

        # the final files, one day at a time, placed under the table (invisible until the commit)
        file_schema = _typed_schema(schema)
        after: dict[str, int] = {}
        adds = []
        from deltalake.transaction import AddAction

        for d in sorted(actions):
            local = scratch / f"{d}.parquet"
            if actions[d] == "merged":
                parts, kept = _merged_day(store, table, version, d, scan, file_schema)
                after[d] = _write_day(local, iter(parts), file_schema)
            else:
                after[d] = _write_day(local, scan.spill.batches(d), file_schema)
            rel = f"{PARTITION}={d}/part-00000-{uuid.uuid4()}-c000.snappy.parquet"
            size = local.stat().st_size
            store.stage_file(local, f"{table}/{rel}")
            staged.append(f"{table}/{rel}")
            adds.append(AddAction(rel, size, {PARTITION: d}, int(time.time() * 1000), True,
                                  json.dumps({"numRecords": after[d]})))
            for p in scan.spill.pieces.pop(d, []):  # the scratch space shrinks as the days are written
                p.unlink(missing_ok=True)

        before = dict(stored)

        def recheck(current) -> None:
            """Under the writer lease: the rule against the table as it is now."""
            if current is None and version is None:
                return
            if current is not None and current.version() == version:
                return
            now_rows, now_version = delta.day_rows(store, table, version=current.version() if current else None)
            fresh = plan_days(scan.day_rows, now_rows, declared=declared, merge=merge, domain=domain,
                              first=scan.first, position=scan.first_pos.__getitem__)
            merged = sorted(d for d, a in actions.items() if a == "merged")
            changed = [d for d in sorted(actions) if (fresh[d] == "merged") != (actions[d] == "merged")]
            if merged and not changed and version is not None and now_version is not None:
                was = delta.day_fingerprints(store, table, merged, version=version)
                now_fp = delta.day_fingerprints(store, table, merged, version=now_version)
                changed = [d for d in merged if was[d] != now_fp[d]]
            if changed:
                raise IngestError(f"{domain} input not ingested: {table} changed on {changed[0]} while this ingest ran "
                                  f"(version {version} -> {now_version}): nothing written; ingest again")
            before.clear()
            before.update(now_rows)

        staged_files = delta.StagedFiles(
            schema=file_schema.append(pa.field(PARTITION, pa.string())), actions=adds,
            partitions=tuple(sorted(actions)), num_rows=sum(after.values()), before_commit=recheck)
        res = delta.write(store, table, staged_files, mode="replace_partitions", feature_schema=schema)
        staged.clear()
    finally:
        for key in staged:  # refused or failed: the staged files go (nothing references them)
            try:
                store.delete(key)
            except Exception:  # noqa: BLE001 - best effort; an unreferenced file harms nothing
                log.warning("could not remove the staged file %s", store.uri(key))
        shutil.rmtree(scratch, ignore_errors=True)

    changes = tuple(DayChange(d, scan.day_rows[d], before.get(d), after[d],
                              "merged" if actions[d] == "merged" and d in before
                              else "replaced" if d in before else "added")
                    for d in sorted(actions))
    result = IngestResult(domain, scan.rows, res.partitions, res.version, len(sources), changes)
    for line in result.lines():
        log.info("%s", line)
    from ecdctr_pipeline.data import empty_days

    for day in empty_days.forget(store, domain, res.partitions):  # the data wins over an empty-day record
        log.warning("raw/%s: %s was recorded as empty; its record is removed (rows were ingested for it)", domain, day)
    return result
