"""Delta Lake helpers on delta-rs (``deltalake``), the Python side's reader and writer.

Who writes which table: delta-rs writes ``raw/*`` (ingest, simulator) and, with
``features.engine: duckdb``, the feature tables; Spark writes the feature tables natively
through delta-spark (``extract.py``). Both keep to the protocol
:data:`ecdctr_pipeline.data.spark.DELTA_PROTOCOL` and each reads what the other wrote.

* :func:`write` creates a table, appends to it, or replaces exactly the ``dt`` partitions the
  data covers (a re-run of a day replaces that day, never duplicates it). The data is a table,
  or :class:`StagedFiles`: Parquet files a streaming writer (ingest) already placed under the
  table, committed by delta-rs in one transaction. ``write_deltalake`` keeps every partition's
  file open, in memory, until its commit (delta-rs issue 3578: a 740 000-row, 80-day input
  held ~260 MB); staged files are written one day at a time;
* every write may carry an *app transaction* ``(app_id, version)`` keyed by the run: when
  the table already records that app id at that version or later, the write is skipped,
  so a retried run never double-commits;
* :func:`read` returns a snapshot as Arrow, with the version it read (for lineage);
* a table records the feature schema it was written under in its properties
  (:func:`record_schema`, at creation by :func:`write`); :func:`require_schema` refuses a table
  of another schema, naming both versions.

Works on ``file://`` and ``s3://`` roots through :class:`~ecdctr_pipeline.data.store.ArtifactStore`.
"""

from __future__ import annotations

import logging
import re
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterable, Literal, Sequence

import pyarrow as pa

from ecdctr_pipeline.core import paths
from ecdctr_pipeline.core.errors import DeltaError
from ecdctr_pipeline.data.store import ArtifactStore

log = logging.getLogger(__name__)

PARTITION_COLUMN = "dt"


@dataclass(frozen=True)
class WriteResult:
    table: str
    version: int  # table version after the write (or the current one when skipped)
    rows: int
    partitions: tuple[str, ...]
    skipped: bool  # True when the app transaction was already committed


def table_uri(store: ArtifactStore, key: str) -> str:
    return store.table_uri(key)


def _open(store: ArtifactStore, key: str, version: int | None = None):
    from deltalake import DeltaTable

    uri = table_uri(store, key)
    if not DeltaTable.is_deltatable(uri, storage_options=store.storage_options() or None):
        return None
    try:
        return DeltaTable(uri, version=version, storage_options=store.storage_options() or None)
    except Exception as exc:  # delta-rs raises several types for a bad version/log
        raise DeltaError(_open_failure(store, key, version, exc)) from None


def exists(store: ArtifactStore, key: str) -> bool:
    return _open(store, key) is not None


def version(store: ArtifactStore, key: str) -> int | None:
    t = _open(store, key)
    return None if t is None else t.version()


def column_names(store: ArtifactStore, key: str) -> list[str] | None:
    """The latest snapshot's column names (None: no table)."""
    t = _open(store, key)
    return None if t is None else [f.name for f in t.schema().fields]


def _recorded(t):
    from ecdctr_pipeline.core.schema import SchemaIdentity

    return SchemaIdentity.from_table_properties(t.metadata().configuration)


def recorded_schema(store: ArtifactStore, key: str):
    """The :class:`~ecdctr_pipeline.core.schema.SchemaIdentity` the table records (None: no table,
    or a table written before schemas were recorded)."""
    t = _open(store, key)
    return None if t is None else _recorded(t)


def require_schema(store: ArtifactStore, key: str, schema, *, who: str) -> None:
    """Refuse ``key`` when it was written under another feature schema than ``schema``
    (:class:`~ecdctr_pipeline.core.schema.SchemaMismatchError`, naming both). A table without a
    record (written before schemas were recorded, or by a Spark writer killed between its first
    commit and the record) passes when it holds every column of ``schema``; its next writer
    records the schema."""
    _require(store, key, _open(store, key), schema, who=who)


def _require(store: ArtifactStore, key: str, t, schema, *, who: str) -> None:
    if t is None:
        return
    recorded = _recorded(t)
    if recorded is None and set(schema.names) <= {f.name for f in t.schema().fields}:
        return
    schema.require(recorded, f"{who}: {store.uri(key)}")


def record_schema(store: ArtifactStore, key: str, schema) -> bool:
    """Record ``schema`` in the properties of a table that records none (one commit). Returns
    whether it wrote. Callers hold the table (its writer lease or its only writer)."""
    t = _open(store, key)
    if t is None or _recorded(t) is not None:
        return False
    t.alter.set_table_properties(schema.identity.table_properties(), raise_if_not_exists=False)
    return True


def committed_txn_version(store: ArtifactStore, key: str, app_id: str) -> int | None:
    t = _open(store, key)
    return None if t is None else t.transaction_version(app_id)


def committed_txn_version_at(store: ArtifactStore, key: str, app_id: str, version: int) -> int | None:
    """The app transaction's version in the snapshot ``version`` of the table."""
    t = _open(store, key, version)
    return None if t is None else t.transaction_version(app_id)


def partition_predicate(values: Iterable[str], column: str = PARTITION_COLUMN) -> str:
    vals = sorted(set(values))
    if not vals:
        raise DeltaError("no partitions to replace")
    for v in vals:
        if "'" in v:
            raise DeltaError(f"invalid partition value {v!r}")
    return f"{column} IN ({', '.join(repr(v) for v in vals)})"


@dataclass
class StagedFiles:
    """Data files already under a table, not yet committed: what :func:`write` commits instead of
    rows (``replace_partitions``: they replace exactly ``partitions``). ``before_commit(current)``
    runs under the table's writer lease with the table as it is then (None: no table yet); it may
    raise to refuse the commit (nothing is committed; the caller removes its files)."""

    schema: pa.Schema  # the files' columns plus the partition column (the table's schema)
    actions: list  # deltalake.transaction.AddAction, one per file (path relative to the table)
    partitions: tuple[str, ...]
    num_rows: int
    before_commit: Callable | None = None


def _partitions_of(data: pa.Table, column: str) -> tuple[str, ...]:
    if isinstance(data, StagedFiles):
        return tuple(sorted(set(data.partitions)))
    if column not in data.column_names:
        raise DeltaError(f"data has no partition column {column!r}")
    col = data.column(column)
    if col.null_count:
        raise DeltaError(f"partition column {column!r} has {col.null_count} null values")
    return tuple(sorted(set(col.to_pylist())))


def write(
    store: ArtifactStore,
    key: str,
    data: pa.Table,
    *,
    mode: Literal["replace_partitions", "append"] = "replace_partitions",
    partition_by: Sequence[str] = (PARTITION_COLUMN,),
    txn: tuple[str, int] | None = None,
    max_commit_retries: int = 25,
    feature_schema=None,
) -> WriteResult:
    """Write ``data`` to the Delta table at ``key`` in one commit.

    ``replace_partitions`` replaces exactly the ``dt`` partitions present in ``data``
    (creating the table if needed); ``append`` adds rows. With ``txn=(app_id, version)``
    the write is skipped when the table already holds that transaction. ``feature_schema``
    (a :class:`~ecdctr_pipeline.core.schema.FeatureSchema`): a table of another schema is
    refused before anything is written, and a table that records none records it. Every write holds
    the table's writer lease (:func:`writer_lease`; a second writer waits up to
    :data:`WRITE_LEASE_WAIT_S`).
    """
    if data.num_rows == 0:
        raise DeltaError(f"refusing to write 0 rows to {store.uri(key)}")
    part_col = partition_by[0] if partition_by else PARTITION_COLUMN
    parts = _partitions_of(data, part_col) if partition_by else ()
    # one writer at a time: the table's state (does it exist, is the app transaction in it) is read
    # and the commit made under the writer lease, so two first writes can never both create the
    # table (delta-rs would commit the second one as an append: every row twice), and a second
    # run of one app transaction finds the first one's commit and skips
    owner = f"{txn[0]}@{txn[1]}" if txn else f"write {key}"
    with writer_lease(store, key, owner=owner, ttl_s=WRITE_LEASE_TTL_S, wait_s=WRITE_LEASE_WAIT_S):
        return _write_held(store, key, data, parts, part_col, mode=mode, partition_by=partition_by, txn=txn,
                           max_commit_retries=max_commit_retries, feature_schema=feature_schema)


WRITE_LEASE_TTL_S = 60  # renewed every 20 s while the commit runs; a killed holder's lease expires
WRITE_LEASE_WAIT_S = 120.0  # a second writer waits this long for the first one, then fails naming it


def _write_held(store: ArtifactStore, key: str, data: pa.Table, parts: tuple[str, ...], part_col: str, *, mode,
                partition_by, txn, max_commit_retries: int, feature_schema) -> WriteResult:
    from deltalake import CommitProperties, Transaction

    current = _open(store, key)
    if feature_schema is not None:
        _require(store, key, current, feature_schema, who="write")
    if txn is not None and current is not None:
        done = current.transaction_version(txn[0])
        if done is not None and done >= txn[1]:
            log.info("skip %s: app transaction %s v%s already committed", key, txn[0], done)
            return WriteResult(key, current.version(), 0, parts, True)
    props = CommitProperties(
        app_transactions=[Transaction(txn[0], txn[1])] if txn else None,
        max_commit_retries=max_commit_retries,
    )
    uri = table_uri(store, key)
    opts = store.storage_options() or None
    if isinstance(data, StagedFiles):
        if mode != "replace_partitions":
            raise DeltaError(f"staged files replace partitions of {store.uri(key)}: mode {mode!r} is not supported")
        if data.before_commit is not None:
            data.before_commit(current)
        _commit_staged(store, key, current, data, parts, part_col, partition_by=partition_by, props=props)
    else:
        _write_rows(store, key, current, data, parts, part_col, uri=uri, opts=opts, mode=mode,
                    partition_by=partition_by, props=props)
    if feature_schema is not None:  # a new table (delta-rs takes no custom property at creation), or one
        record_schema(store, key, feature_schema)  # written before schemas were recorded: one more commit
    # delta-rs creates files 0666 and folders 0777 less the umask: no wider than the store's own
    store.restrict_modes(key, only=["_delta_log", *(f"{part_col}={p}" for p in parts)]
                         if current is not None and partition_by else None)
    t = _open(store, key)
    return WriteResult(key, t.version(), data.num_rows, parts, False)


def _write_rows(store: ArtifactStore, key: str, current, data: pa.Table, parts, part_col: str, *, uri, opts, mode,
                partition_by, props) -> None:
    from deltalake import write_deltalake

    with _one_line(f"write to {store.uri(key)} failed"):
        if current is None:
            write_deltalake(uri, data, partition_by=list(partition_by) or None, mode="append",
                            storage_options=opts, commit_properties=props)
        elif mode == "append":
            write_deltalake(current, data, mode="append", commit_properties=props)
        else:
            write_deltalake(current, data, mode="overwrite", predicate=partition_predicate(parts, part_col),
                            commit_properties=props)


@contextmanager
def _one_line(what: str):
    """delta-rs's failure of a commit as one :class:`DeltaError` line (``what: the reason``)."""
    try:
        yield
    except DeltaError:
        raise
    except Exception as exc:
        raise DeltaError(f"{what}: {' '.join(str(exc).split())[:400]}") from None


def _commit_staged(store: ArtifactStore, key: str, current, data: StagedFiles, parts, part_col: str, *,
                   partition_by, props) -> None:
    """One commit adding ``data``'s files: a new table, or the replacement of ``parts``."""
    from deltalake import Schema
    from deltalake import transaction as dtx  # looked up at call time (tests/faults/killer.py wraps it)

    with _one_line(f"commit to {store.uri(key)} failed"):
        if current is None:
            dtx.create_table_with_add_actions(table_uri(store, key), Schema.from_arrow(data.schema), data.actions,
                                              mode="append", partition_by=list(partition_by) or None,
                                              storage_options=store.storage_options() or None,
                                              commit_properties=props)
        else:  # the table's own schema: the commit must not touch its metadata
            current.create_write_transaction(data.actions, mode="overwrite", schema=current.schema(),
                                             partition_by=list(partition_by) or None,
                                             partition_filters=[(part_col, "in", list(parts))],
                                             commit_properties=props)


def read(
    store: ArtifactStore,
    key: str,
    *,
    partitions: Iterable[str] | None = None,
    columns: Sequence[str] | None = None,
    version: int | None = None,
    partition_column: str = PARTITION_COLUMN,
) -> tuple[pa.Table, int]:
    """A snapshot (latest or ``version``) as Arrow, optionally limited to some ``dt`` values."""
    t = _open(store, key, version)
    if t is None:
        raise DeltaError(f"Delta table not found: {store.uri(key)}")
    filters = None
    if partitions is not None:
        vals = sorted(set(partitions))
        if not vals:
            raise DeltaError(f"no partitions asked of {store.uri(key)}")
        filters = [(partition_column, "in", vals)]
    try:
        table = t.to_pyarrow_table(partitions=filters, columns=list(columns) if columns else None)
    except Exception as exc:  # a data file the log names is missing or not Parquet: name it
        raise unreadable(store, key, t, exc, filters) from None
    return table, t.version()


def partitions(store: ArtifactStore, key: str, partition_column: str = PARTITION_COLUMN) -> list[str]:
    """The ``dt`` values with data in the latest snapshot."""
    t = _open(store, key)
    if t is None:
        return []
    vals = {p.get(partition_column) for p in t.partitions()}
    return sorted(v for v in vals if v is not None)


def day_rows(store: ArtifactStore, key: str, *, version: int | None = None,
             partition_column: str = PARTITION_COLUMN) -> tuple[dict[str, int], int | None]:
    """The row count of each ``dt`` day of a snapshot (latest or ``version``), from the commit
    log's file statistics (no data file is read unless a file lacks them), and the version read
    (``({}, None)``: no table)."""
    t = _open(store, key, version)
    if t is None:
        return {}, None
    return _day_rows(t, partition_column), t.version()


def _day_rows(t, partition_column: str = PARTITION_COLUMN) -> dict[str, int]:
    actions = t.get_add_actions(flatten=True)
    col = f"partition.{partition_column}"
    out: dict[str, int] = {}
    if not actions.num_rows or col not in actions.schema.names:
        return out
    days = actions.column(col).to_pylist()
    counts = actions.column("num_records").to_pylist() if "num_records" in actions.schema.names else [None] * len(days)
    unknown = set()
    for day, n in zip(days, counts):
        if n is None:
            unknown.add(day)
        else:
            out[day] = out.get(day, 0) + int(n)
    if unknown:  # files without statistics: count the days' rows (Parquet footers)
        import pyarrow.compute as pc

        ds = t.to_pyarrow_dataset(partitions=[(partition_column, "in", sorted(unknown))])
        for d in unknown:
            out[d] = ds.count_rows(filter=pc.field(partition_column) == d)
    return out


def describe(store: ArtifactStore, key: str) -> dict | None:
    t = _open(store, key)
    if t is None:
        return None
    parts = sorted({p.get(PARTITION_COLUMN) for p in t.partitions()} - {None})
    recorded = _recorded(t)
    return {
        "table": key,
        "version": t.version(),
        "feature_schema": recorded.to_dict() if recorded else None,
        "partitions": len(parts),
        "first_dt": parts[0] if parts else None,
        "last_dt": parts[-1] if parts else None,
    }


# ------------------------------------------------------------------ one writer at a time
class WriterBusyError(DeltaError):
    """Another writer holds the lease of the table."""


def writer_lease(store: ArtifactStore, table: str, *, owner: str, ttl_s: int,
                 clock: Callable[[], float] = time.time, wait_s: float = 0.0):
    """Hold the writer lease of ``table`` while the block runs (a context manager).

    Delta-Spark commits to S3 through its single-driver log store: two drivers committing
    the same version at once could overwrite each other's log entry. So every Spark writer
    of a table first takes ``leases/<table>.json`` (:func:`~ecdctr_pipeline.data.leases.hold`);
    a second writer fails at once with a one-line :class:`WriterBusyError` naming the holder,
    and commits nothing.
    """
    from ecdctr_pipeline.data import leases

    return leases.hold(store, paths.writer_lease(table), owner=owner, ttl_s=ttl_s, clock=clock, wait_s=wait_s,
                       busy=lambda holder: WriterBusyError(f"{store.uri(table)} is being written by {holder}; "
                                                           "retry when it is done"))


def file_uris(store: ArtifactStore, key: str, partitions: Sequence[str],
              partition_column: str = PARTITION_COLUMN) -> list[str]:
    """Data files of the latest snapshot holding ``partitions``."""
    t = _open(store, key)
    if t is None:
        raise DeltaError(f"Delta table not found: {store.uri(key)}")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return t.file_uris(partition_filters=[(partition_column, "in", sorted(set(partitions)))])


def dataset(store: ArtifactStore, key: str, partitions: Sequence[str], *, version: int,
            partition_column: str = PARTITION_COLUMN):
    """The Parquet files of ``partitions`` at ``version`` as a ``pyarrow.dataset.Dataset`` (lazy:
    nothing is read until its fragments are scanned). Streaming readers scan it record batch by
    record batch instead of materialising the snapshot."""
    t = _open(store, key, version)
    if t is None:
        raise DeltaError(f"Delta table not found: {store.uri(key)}")
    vals = sorted(set(partitions))
    if not vals:
        raise DeltaError(f"no partitions asked of {store.uri(key)}")
    return t.to_pyarrow_dataset(partitions=[(partition_column, "in", vals)])


def day_fingerprints(store: ArtifactStore, key: str, days: Iterable[str], *, version: int | None = None,
                     partition_column: str = PARTITION_COLUMN) -> dict[str, str]:
    """A fingerprint of each ``dt`` day's data files in a snapshot (latest or ``version``): the
    SHA-256 (12 hex digits) of the sorted paths of the files holding the day, ``"-"`` for a day
    without data. A day's files change exactly when a commit rewrites that day (a re-ingest, a
    late day arriving), so two snapshots agree on a day's fingerprint iff they hold the same
    rows of it."""
    import hashlib

    wanted = sorted(set(days))
    t = _open(store, key, version)
    if t is None:
        return {d: "-" for d in wanted}
    actions = t.get_add_actions(flatten=True)
    col = f"partition.{partition_column}"
    files: dict[str, list[str]] = {}
    if actions.num_rows and col in actions.schema.names:
        for path, day in zip(actions.column("path").to_pylist(), actions.column(col).to_pylist()):
            files.setdefault(day, []).append(path)
    return {d: hashlib.sha256("\n".join(sorted(files[d])).encode()).hexdigest()[:12] if d in files else "-"
            for d in wanted}


# ------------------------------------------------------------------ unreadable tables
# A table whose log or data files were damaged outside the pipeline (a file deleted or cut short,
# a commit edited) fails in delta-rs, pyarrow or Spark with messages of their own: a Rust
# backtrace of "<unknown>" frames, a Java stack. These turn them into one line naming the table
# and the file, and what rewrites it.
_BACKTRACE = re.compile(r"^\s*(\d+: |at |Stack backtrace)")


def library_message(exc: BaseException, limit: int = 200) -> str:
    """``exc``'s message on one line, without the backtrace delta-rs appends (``0: <unknown>``
    frames) and the ``↳`` cause markers, cut to ``limit`` characters."""
    kept = []
    for line in str(exc).splitlines():
        if _BACKTRACE.match(line):
            break
        kept.append(line.strip().lstrip("↳").strip())
    text = " ".join(" ".join(kept).split()) or type(exc).__name__
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _bad_log_entry(store: ArtifactStore, key: str, newest: int = 100) -> tuple[str, int] | None:
    """The newest commit file of ``key``'s Delta log that is not JSON lines (cut short, edited):
    its name and the bad line. Only the ``newest`` commits are read."""
    import json

    entries = sorted(k for k in store.list(f"{key}/_delta_log") if k.endswith(".json"))
    for k in reversed(entries[-newest:]):
        try:
            lines = store.get_bytes(k).decode("utf-8").splitlines()
        except UnicodeDecodeError:
            return k.rsplit("/", 1)[-1], 1
        except FileNotFoundError:
            continue
        for n, line in enumerate(lines, 1):
            try:
                if line.strip():
                    json.loads(line)
            except ValueError:
                return k.rsplit("/", 1)[-1], n
    return None


def _open_failure(store: ArtifactStore, key: str, version: int | None, exc: BaseException) -> str:
    at = f" at version {version}" if version is not None else ""
    bad = _bad_log_entry(store, key)
    if bad is not None:
        name, line = bad
        return (f"cannot open Delta table {key} ({store.uri(key)}){at}: its log entry _delta_log/{name} is not "
                f"valid JSON (line {line}: cut short or edited); restore it from a copy (the newest entry moved "
                "aside returns the table to the version before it)")
    return f"cannot open Delta table {key} ({store.uri(key)}){at}: {library_message(exc)}"


def _rewrite_hint(key: str, path: str) -> str:
    m = re.search(r"dt=(\d{4}-\d{2}-\d{2})", path)
    day = m.group(1) if m else None
    if key.startswith("raw/"):
        return f"restore it from a copy, or ingest day {day} again" if day else "restore it from a copy"
    return (f"restore it, or re-extract a window holding {day} with --force" if day
            else "restore it, or re-extract with --force")


_MISSING = re.compile(r"Object at location \S+ not found|does not exist|No such file|FILE_NOT_EXIST")


def data_file_error(store: ArtifactStore | None, key: str, version: int | None, path: str,
                    exc: BaseException) -> DeltaError:
    """The one-line error for data file ``path`` (relative to the table) that could not be read
    (``store`` None: the table named by its key only)."""
    missing = isinstance(exc, FileNotFoundError) or bool(_MISSING.search(str(exc)))
    what = "is missing" if missing else "is not a readable Parquet file (cut short or overwritten?)"
    at = f" version {version}" if version is not None else ""
    where = f" ({store.uri(key)})" if store is not None else ""
    return DeltaError(f"cannot read {key}{where}{at}: data file {path} named in its Delta log {what}; "
                      f"{_rewrite_hint(key, path)}")


def unreadable(store: ArtifactStore, key: str, t, exc: BaseException, filters=None) -> DeltaError:
    """The error for a read of the open table ``t`` that failed with ``exc``: names the first data
    file of the read whose Parquet footer cannot be read, else repeats the library's message."""
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            frags = sorted(t.to_pyarrow_dataset(partitions=filters).get_fragments(), key=lambda f: f.path)
    except Exception:  # noqa: BLE001 - the listing itself fails: the library's message below
        frags = []
    for frag in frags:
        try:
            frag.count_rows()
        except Exception as bad:  # noqa: BLE001 - missing, not Parquet, cut short
            return data_file_error(store, key, t.version(), frag.path, bad)
    return DeltaError(f"cannot read {key} ({store.uri(key)}) version {t.version()}: {library_message(exc)}")


_SPARK_FILE = re.compile(r"((?:file:|s3a://)[^\s'\"]+?\.parquet)")


def spark_read_failure(store: ArtifactStore, exc: BaseException) -> str | None:
    """One line for a Spark job that failed reading a data file of a table under ``store``
    (``FAILED_READ_FILE``: missing, or not Parquet), naming the table and the file; None for
    any other failure."""
    text = str(exc)
    if "FAILED_READ_FILE" not in text and "FileNotFoundException" not in text and "not a Parquet file" not in text:
        return None
    m = _SPARK_FILE.search(text)
    if m is None:
        return None
    def bare(uri: str) -> str:
        return re.sub(r"^(file:|s3a://)/*", "", uri)

    base, found = bare(store.spark_uri()).rstrip("/") + "/", bare(m.group(1))
    if not found.startswith(base) or "/dt=" not in found:
        return None
    key, _, name = found[len(base):].partition("/dt=")
    cause = FileNotFoundError(text) if ("FILE_NOT_EXIST" in text or "FileNotFoundException" in text) else ValueError()
    return str(data_file_error(store, key, None, f"dt={name}", cause))
