"""Delta Lake helpers on delta-rs (``deltalake``): the only writer of ``_delta_log``.

* :func:`write` creates a table, appends to it, or replaces exactly the ``dt`` partitions the
  data covers (a re-run of a day replaces that day, never duplicates it);
* every write may carry an *app transaction* ``(app_id, version)`` keyed by the run: when
  the table already records that app id at that version or later, the write is skipped,
  so a retried run never double-commits;
* :func:`read` returns a snapshot as Arrow, with the version it read (for lineage).

Works on ``file://`` and ``s3://`` roots through :class:`~ecdctr_pipeline.store.ArtifactStore`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Iterable, Literal, Sequence

import pyarrow as pa

from .errors import DeltaError
from .store import ArtifactStore, LocalStore

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
    if isinstance(store, LocalStore):
        return str(store.local_path(key))
    return store.uri(key)


def _open(store: ArtifactStore, key: str, version: int | None = None):
    from deltalake import DeltaTable

    uri = table_uri(store, key)
    if not DeltaTable.is_deltatable(uri, storage_options=store.storage_options() or None):
        return None
    try:
        return DeltaTable(uri, version=version, storage_options=store.storage_options() or None)
    except Exception as exc:  # delta-rs raises several types for a bad version/log
        raise DeltaError(f"cannot open Delta table {store.uri(key)} (version {version}): {exc}") from None


def exists(store: ArtifactStore, key: str) -> bool:
    return _open(store, key) is not None


def version(store: ArtifactStore, key: str) -> int | None:
    t = _open(store, key)
    return None if t is None else t.version()


def committed_txn_version(store: ArtifactStore, key: str, app_id: str) -> int | None:
    t = _open(store, key)
    return None if t is None else t.transaction_version(app_id)


def partition_predicate(values: Iterable[str], column: str = PARTITION_COLUMN) -> str:
    vals = sorted(set(values))
    if not vals:
        raise DeltaError("no partitions to replace")
    for v in vals:
        if "'" in v:
            raise DeltaError(f"invalid partition value {v!r}")
    return f"{column} IN ({', '.join(repr(v) for v in vals)})"


def _partitions_of(data: pa.Table, column: str) -> tuple[str, ...]:
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
) -> WriteResult:
    """Write ``data`` to the Delta table at ``key`` in one commit.

    ``replace_partitions`` replaces exactly the ``dt`` partitions present in ``data``
    (creating the table if needed); ``append`` adds rows. With ``txn=(app_id, version)``
    the write is skipped when the table already holds that transaction.
    """
    from deltalake import CommitProperties, Transaction, write_deltalake

    if data.num_rows == 0:
        raise DeltaError(f"refusing to write 0 rows to {store.uri(key)}")
    part_col = partition_by[0] if partition_by else PARTITION_COLUMN
    parts = _partitions_of(data, part_col) if partition_by else ()
    current = _open(store, key)
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
    try:
        if current is None:
            write_deltalake(uri, data, partition_by=list(partition_by) or None, mode="append",
                            storage_options=opts, commit_properties=props)
        elif mode == "append":
            write_deltalake(current, data, mode="append", commit_properties=props)
        else:
            write_deltalake(current, data, mode="overwrite", predicate=partition_predicate(parts, part_col),
                            commit_properties=props)
    except Exception as exc:
        if isinstance(exc, DeltaError):
            raise
        msg = " ".join(str(exc).split())[:400]
        raise DeltaError(f"write to {store.uri(key)} failed: {msg}") from None
    t = _open(store, key)
    return WriteResult(key, t.version(), data.num_rows, parts, False)


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
    table = t.to_pyarrow_table(partitions=filters, columns=list(columns) if columns else None)
    return table, t.version()


def partitions(store: ArtifactStore, key: str, partition_column: str = PARTITION_COLUMN) -> list[str]:
    """The ``dt`` values with data in the latest snapshot."""
    t = _open(store, key)
    if t is None:
        return []
    vals = {p.get(partition_column) for p in t.partitions()}
    return sorted(v for v in vals if v is not None)


def describe(store: ArtifactStore, key: str) -> dict | None:
    t = _open(store, key)
    if t is None:
        return None
    parts = sorted({p.get(PARTITION_COLUMN) for p in t.partitions()} - {None})
    return {
        "table": key,
        "version": t.version(),
        "partitions": len(parts),
        "first_dt": parts[0] if parts else None,
        "last_dt": parts[-1] if parts else None,
    }


# ------------------------------------------------------------------ files written by Spark
@dataclass(frozen=True)
class DataFile:
    """A Parquet data file already written (by Spark) for one partition."""

    local_path: str  # where it lies now (a local file)
    partition: str  # its dt value
    num_records: int


def commit_files(
    store: ArtifactStore,
    key: str,
    files: Sequence[DataFile],
    schema: pa.Schema,
    *,
    replace_partitions: Sequence[str],
    txn: tuple[str, int] | None,
    run_tag: str,
    partition_column: str = PARTITION_COLUMN,
    max_commit_retries: int = 25,
) -> WriteResult:
    """Place Parquet files in the table and commit them in one Delta transaction.

    Files go to ``<table>/<col>=<value>/<run_tag>-<n>.parquet`` (a rename on ``file://``, an
    upload on ``s3://``), then one commit adds them and removes every file of
    ``replace_partitions``; with ``txn`` a retried run whose transaction is already in the
    log commits nothing. Placed files that no commit references are invisible to readers.
    """
    import json
    import os
    import shutil
    import time
    from pathlib import Path

    from deltalake import CommitProperties, Schema, Transaction
    from deltalake.transaction import AddAction, create_table_with_add_actions

    current = _open(store, key)
    if txn is not None and current is not None:
        done = current.transaction_version(txn[0])
        if done is not None and done >= txn[1]:
            return WriteResult(key, current.version(), 0, tuple(sorted(replace_partitions)), True)
    stray = sorted({f.partition for f in files} - set(replace_partitions))
    if stray:
        raise DeltaError(f"files for partitions {stray} outside the partitions being replaced in {key}")
    actions = []
    now_ms = int(time.time() * 1000)
    for i, f in enumerate(sorted(files, key=lambda x: (x.partition, x.local_path))):
        rel = f"{partition_column}={f.partition}/{run_tag}-{i:05d}.parquet"
        size = os.path.getsize(f.local_path)
        if isinstance(store, LocalStore):
            dest = Path(table_uri(store, key)) / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(f.local_path, dest)
        else:
            store.upload_file(Path(f.local_path), f"{key}/{rel}")
        actions.append(AddAction(rel, size, {partition_column: f.partition}, now_ms, True,
                                 json.dumps({"numRecords": f.num_records})))
    props = CommitProperties(app_transactions=[Transaction(txn[0], txn[1])] if txn else None,
                             max_commit_retries=max_commit_retries)
    delta_schema = Schema.from_arrow(schema)
    try:
        if current is None:
            create_table_with_add_actions(table_uri(store, key), delta_schema, actions, mode="append",
                                          partition_by=[partition_column],
                                          storage_options=store.storage_options() or None,
                                          commit_properties=props)
        else:
            current.create_write_transaction(
                actions, mode="overwrite", schema=delta_schema, partition_by=[partition_column],
                partition_filters=[(partition_column, "in", sorted(replace_partitions))],
                commit_properties=props)
    except Exception as exc:
        msg = " ".join(str(exc).split())[:400]
        raise DeltaError(f"commit to {store.uri(key)} failed: {msg}") from None
    t = _open(store, key)
    return WriteResult(key, t.version(), sum(f.num_records for f in files), tuple(sorted(replace_partitions)), False)


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
