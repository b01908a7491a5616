"""Feature extraction runs: raw Delta → features Delta, by Spark (delta-spark) or DuckDB.

``extract_tpm`` builds ``features/tpm`` for the months a TPM run trains on;
``extract_complete`` builds ``features/complete/{domain}`` for the window the plan names
(natural: the CPM window of the latest Monday ≤ DATE; ad: the A-CTR window of DATE,
holdout included). Each commit replaces exactly the window's ``dt`` partitions and carries
an app transaction whose id names the window and the fingerprint of the settings that shape
the features (:func:`settings_fingerprint`) and whose version encodes the raw table version(s)
read (:func:`encode_txn`). The skip decision is a pure function of those: a run whose
window's transaction records exactly the raw versions it would read commits nothing; after raw
data changed (or the settings did) it recomputes and replaces. ``--force`` recomputes with the
same raw versions and a higher force count, which a later normal run still reads as "built
from raw version N" — a forced run never hides a later change. The trainers read the same
transaction back (:func:`built_from`) to record which raw days their features came from.

Every day of the window must have raw data (else a one-line error naming the day). The
history before the window (behaviour sequences, counters) must be complete from the raw
table's first day on: days before that first day are before history began and count as
empty; a gap after it is an error naming the day.

Engines (``features.engine``):

* ``spark`` (default): Spark reads the raw table at the exact version checked here
  (``versionAsOf``) and writes the features natively with delta-spark — ``replaceWhere`` on
  the window's days, ``txnAppId``/``txnVersion`` for idempotent retries — on ``file://`` or,
  for ``s3://`` stores, on ``s3a://`` from every executor. Nothing is staged on the driver.
  A writer holds the table's lease (:func:`ecdctr_pipeline.data.delta.writer_lease`) while it writes.
* ``duckdb``: the same features with DuckDB SQL in-process (a single-machine alternative,
  also used by the fast tests), written by delta-rs.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from dataclasses import asdict, dataclass

from ecdctr_pipeline.core import calendar, paths
from ecdctr_pipeline.data import delta
from ecdctr_pipeline.core.errors import EcdctrError
from ecdctr_pipeline.core.schema import PARTITION, FeatureSchema
from ecdctr_pipeline.core.settings import Settings
from ecdctr_pipeline.data.features import ROW_ORDER, ROW_ORDER_COLUMNS
from ecdctr_pipeline.data.store import ArtifactStore

log = logging.getLogger(__name__)


class MissingDataError(EcdctrError):
    """A day a run needs has no raw data."""


class ExtractError(EcdctrError):
    """A feature table that these settings cannot extend."""


@dataclass(frozen=True)
class ExtractResult:
    table: str
    window: dict
    rows: int
    partitions: int
    version: int
    raw_version: int
    skipped: bool
    seconds: float

    def to_dict(self) -> dict:
        return asdict(self)


# ------------------------------------------------------------------ app transactions
_FORCE_BITS = 10  # forced re-runs of the same inputs: up to 1023 per window and raw version
_OTHER_BITS = 24  # the other domain's raw version (behaviour sequences with natural clicks)


def encode_txn(raw_version: int, other_version: int = 0, forced: int = 0) -> int:
    """The app transaction version of a window built from ``raw_version`` (and the other domain's
    ``other_version``): grows with either (Delta skips a transaction version at or below the
    committed one) and decodes back (:func:`decode_txn`)."""
    if not (0 <= other_version < 1 << _OTHER_BITS and 0 <= forced < 1 << _FORCE_BITS):
        raise ExtractError(f"raw version {other_version} or force count {forced} out of range")
    return (((raw_version + 1) << _OTHER_BITS | other_version) << _FORCE_BITS) | forced


def decode_txn(txn_version: int) -> tuple[int, int, int]:
    """``(raw version, other domain's raw version, force count)`` of :func:`encode_txn`."""
    forced = txn_version & ((1 << _FORCE_BITS) - 1)
    rest = txn_version >> _FORCE_BITS
    return (rest >> _OTHER_BITS) - 1, rest & ((1 << _OTHER_BITS) - 1), forced


def settings_fingerprint(settings: Settings, domain: str | None) -> str:
    """12 hex digits over everything that shapes a feature row: the feature schema and, for the
    complete tables, the sequence length, history and counter windows and the sequences' source.
    Part of the app transaction id: after a change the windows are recomputed."""
    import hashlib
    import json

    f = settings.features
    parts: dict = {"schema": f.feature_schema().identity.fingerprint}
    if domain is not None:
        parts.update(max_seq_len=f.max_seq_len, history_days=f.history_days,
                     counter_windows_days=list(f.counter_windows_days),
                     ad_history=f.ad_history if domain == "ad" else "ad", source_sequence=f.source_sequence(domain))
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:12]


@dataclass(frozen=True)
class Job:
    """One extraction's identity: the table it writes, the window, its app transaction id, and the
    raw tables it reads with the days each row of the window depends on."""

    out_table: str
    window: calendar.Window
    app_id: str
    domain: str
    history_days: int
    history_domain: str | None

    def raw_days(self) -> list[str]:
        start = self.window.start - dt.timedelta(days=self.history_days)
        return calendar.Window(start, self.window.end).partitions()


def tpm_job(settings: Settings, month) -> Job:
    plan = calendar.tpm_plan(month, settings.calendar)
    w = plan.data_window  # in the id: a longer window of the same month (KEEP-style's 7 months) is another job
    return Job(paths.tpm_features(), w,
               f"ecdctr:extract:tpm:{plan.month}:{w.start}:{w.end}:{settings_fingerprint(settings, None)}", "natural",
               0, None)


def complete_job(settings: Settings, domain: str, as_of) -> Job:
    f = settings.features
    window = complete_window(settings, domain, as_of)
    mode = f.ad_history if domain == "ad" else "ad"
    return Job(paths.complete_features(domain), window,
               f"ecdctr:extract:complete:{domain}:{window.start}:{window.end}:{settings_fingerprint(settings, domain)}",
               domain, max(f.history_days, max(f.counter_windows_days)), None if mode == "ad" else "natural")


def built_from(store: ArtifactStore, job: Job, *, version: int | None = None) -> dict[str, dict] | None:
    """The raw inputs of ``job``'s window as the feature table holds it (at ``version``): for each
    raw table read, its version and the fingerprint of each day the window depends on
    (:func:`~ecdctr_pipeline.data.delta.day_fingerprints`). None when the table holds no
    extraction of this window under these settings."""
    done = delta.committed_txn_version(store, job.out_table, job.app_id) if version is None else \
        delta.committed_txn_version_at(store, job.out_table, job.app_id, version)
    if done is None:
        return None
    raw_version, other_version, _ = decode_txn(done)
    days = job.raw_days()
    out = {paths.raw_table(job.domain): {"version": raw_version, "days": delta.day_fingerprints(
        store, paths.raw_table(job.domain), days, version=raw_version)}}
    if job.history_domain is not None:
        other = paths.raw_table(job.history_domain)
        out[other] = {"version": other_version,
                      "days": delta.day_fingerprints(store, other, days, version=other_version)}
    return out


def spark_raw_schema(schema: FeatureSchema):
    """The raw columns of ``schema`` as a Spark schema."""
    from pyspark.sql import types as T

    m = {"int8": T.ByteType(), "int16": T.ShortType(), "int32": T.IntegerType(), "int64": T.LongType()}
    fields = []
    for c in schema.columns:
        t = T.TimestampType() if c.role == "time" else m[c.type]
        fields.append(T.StructField(c.name, t, True))
    return T.StructType(fields)


def needed_days(store: ArtifactStore, domain: str, window: calendar.Window, history_days: int,
                *, who: str, max_empty: int = 0) -> list[str]:
    """Raw ``dt`` values to read: the window's (all required, but for at most ``max_empty`` days
    recorded as empty: :mod:`~ecdctr_pipeline.data.empty_days`) and the history before it."""
    from ecdctr_pipeline.data import empty_days

    table = paths.raw_table(domain)
    present = set(delta.partitions(store, table))
    if not present:
        raise MissingDataError(f"{who}: no raw data at all in {table} ({store.uri(table)})")
    _, unrecorded = empty_days.accept(store, table, window, [d for d in window.partitions() if d not in present],
                                      max_empty=max_empty, who=who)
    if unrecorded:
        raise MissingDataError(f"{who}: no raw data for {unrecorded[0]} in {table} (window {window})")
    first = min(present)
    history = calendar.lookback(window.start, history_days).partitions() if history_days else []
    gaps = [d for d in history if d >= first and d not in present]
    if gaps:
        empty = empty_days.recorded(store, domain)
        for day in gaps:
            if day not in empty:
                raise MissingDataError(f"{who}: no raw data for {day} in {table} (history before window {window})")
    return [d for d in history + window.partitions() if d in present]


def spark_schema(schema):
    """The Spark type of each column of an Arrow schema (the feature tables' contract)."""
    import pyarrow as pa
    from pyspark.sql import types as T

    simple = {pa.int8(): T.ByteType(), pa.int16(): T.ShortType(), pa.int32(): T.IntegerType(),
              pa.int64(): T.LongType(), pa.float32(): T.FloatType(), pa.float64(): T.DoubleType(),
              pa.string(): T.StringType()}

    def conv(t):
        if pa.types.is_timestamp(t):
            return T.TimestampType()
        if pa.types.is_list(t):
            return T.ArrayType(conv(t.value_type), True)
        if t not in simple:
            raise EcdctrError(f"no Spark type for Arrow type {t}")
        return simple[t]

    return T.StructType([T.StructField(f.name, conv(f.type), True) for f in schema])


def _run_spark(settings: Settings, spark, store: ArtifactStore, raw_table: str, raw_version: int, days: list[str],
               build, schema, out_table: str, window: calendar.Window, txn: tuple[str, int], who: str,
               other: tuple[str, int, list[str]] | None = None, feature_schema: FeatureSchema | None = None):
    """Spark reads raw at ``raw_version`` and writes the window's partitions with delta-spark.
    ``other``: (raw table, version, days) whose clicks join the behaviour sequences.

    Returns ``(rows, version, skipped)``.
    """
    from pyspark.sql import functions as F

    from ecdctr_pipeline.data.spark import configure_store, get_spark

    if spark is None:
        spark = get_spark(settings)
    else:
        configure_store(spark, settings.store)
    def read(table, version, read_days):
        return (spark.read.format("delta").option("versionAsOf", version).load(store.spark_uri(table))
                .where(F.col(PARTITION).isin(read_days)).drop(PARTITION))

    raw = read(raw_table, raw_version, days)
    target = spark_schema(schema)
    built = build(raw) if other is None else build(raw, read(*other))
    out = built.select(*[F.col(f.name).cast(f.dataType).alias(f.name) for f in target.fields])
    before = delta.version(store, out_table)
    predicate = f"{PARTITION} >= '{window.start}' AND {PARTITION} < '{window.end}'"
    log.info("%s: reading %s v%d (%d day(s)), writing %s", who, raw_table, raw_version, len(days), out_table)
    with delta.writer_lease(store, out_table, owner=f"{txn[0]}@{txn[1]}", ttl_s=settings.spark.writer_lease_s):
        (out.repartition(PARTITION).sortWithinPartitions(*ROW_ORDER_COLUMNS).write.format("delta").mode("overwrite")
         .option("replaceWhere", predicate).option("txnAppId", txn[0]).option("txnVersion", str(txn[1]))
         .partitionBy(PARTITION).save(store.spark_uri(out_table)))
        after = delta.version(store, out_table)
        rows = 0
        if after != before:  # else Delta skipped the write: this app transaction is already in the log
            last = spark.sql(f"DESCRIBE HISTORY delta.`{store.spark_uri(out_table)}` LIMIT 1").collect()[0]
            rows = int((last["operationMetrics"] or {}).get("numOutputRows", 0))
        # a new table (or one written before schemas were recorded) records the feature schema: a commit
        if feature_schema is not None and delta.record_schema(store, out_table, feature_schema):
            after = delta.version(store, out_table)
    return rows, after, after == before


def _run_duckdb(store: ArtifactStore, raw_table: str, raw_version: int, days: list[str], sql_for, schema,
                out_table: str, window: calendar.Window, txn: tuple[str, int], who: str,
                other: tuple[str, int, list[str]] | None = None,
                feature_schema: FeatureSchema | None = None) -> delta.WriteResult:
    """The DuckDB engine: same features from the same raw snapshot(s), one delta-rs commit."""
    import duckdb

    raw, _ = delta.read(store, raw_table, partitions=days, version=raw_version)
    con = duckdb.connect()
    con.register("raw", raw.drop_columns([PARTITION]))
    if other is not None:
        other_raw, _ = delta.read(store, other[0], partitions=other[2], version=other[1])
        con.register("other_raw", other_raw.drop_columns([PARTITION]))
    out = con.sql(sql_for("raw") if other is None else sql_for("raw", "other_raw")).fetch_arrow_table().cast(schema)
    # every window day read (recorded empty days are not) has rows
    missing = sorted((set(window.partitions()) & set(days)) - set(out[PARTITION].unique().to_pylist()))
    if missing:
        raise MissingDataError(f"{who}: extraction produced no rows for {missing[0]} (window {window})")
    return delta.write(store, out_table, out, txn=txn, feature_schema=feature_schema)


def _run(settings: Settings, store: ArtifactStore, *, domain: str, out_table: str, window: calendar.Window, history_days: int,
         app_id: str, build, schema, force: bool, who: str, spark=None, sql_for=None,
         history_domain: str | None = None) -> ExtractResult:
    """``history_domain``: another domain whose clicks join the behaviour sequences (its raw table
    must cover the same days; its version is part of the commit's app transaction version)."""
    t0 = time.perf_counter()
    store.check_access()
    if settings.features.engine == "spark":
        from ecdctr_pipeline.data.spark import check_jars

        check_jars(settings)
    raw_table = paths.raw_table(domain)
    fs = settings.features.feature_schema()
    for t in (raw_table, out_table) + ((paths.raw_table(history_domain),) if history_domain else ()):
        delta.require_schema(store, t, fs, who=who)
    max_empty = settings.calendar.max_empty_days
    days = needed_days(store, domain, window, history_days, who=who, max_empty=max_empty)
    raw_version = delta.version(store, raw_table)
    other = None
    if history_domain is not None:
        other_table = paths.raw_table(history_domain)
        other = (other_table, delta.version(store, other_table),
                 needed_days(store, history_domain, window, history_days, max_empty=max_empty,
                             who=f"{who} ({history_domain} clicks in the sequences)"))
    # the skip decision: the raw version(s) this run reads against those the window's last commit
    # recorded (never a counter a forced run could move past them)
    inputs = (raw_version, other[1] if other else 0)
    done = delta.committed_txn_version(store, out_table, app_id)
    built = decode_txn(done) if done is not None else None
    if built is not None and (built[0] > inputs[0] or built[1] > inputs[1]):
        raise ExtractError(f"{who}: {out_table} holds this window built from raw version {built[0]} but "
                           f"{raw_table} is at version {raw_version}: was a raw table recreated? extract into a "
                           "new store")
    if built is not None and built[:2] == inputs and not force:
        log.info("%s: %s already built from raw version %s; nothing to do", who, out_table, raw_version)
        return ExtractResult(out_table, window.to_dict(), 0, window.days, delta.version(store, out_table),
                             raw_version, True, round(time.perf_counter() - t0, 3))
    txn_version = done + 1 if built is not None and built[:2] == inputs else encode_txn(*inputs)
    existing = delta.column_names(store, out_table)
    if existing is not None and existing != schema.names:
        added, gone = sorted(set(schema.names) - set(existing)), sorted(set(existing) - set(schema.names))
        raise ExtractError(f"{who}: {out_table} holds other columns than these settings build (new: "
                           f"{', '.join(added) or 'none'}; not built any more: {', '.join(gone) or 'none'}), as after "
                           "a change of features.counter_windows_days or features.ad_history: keep the settings "
                           "the table was built with, or extract into a new store")
    if settings.features.engine == "duckdb":
        res = _run_duckdb(store, raw_table, raw_version, days, sql_for, schema, out_table, window,
                          (app_id, txn_version), who, other, fs)
        secs = round(time.perf_counter() - t0, 3)
        return ExtractResult(out_table, window.to_dict(), res.rows, window.days, res.version, raw_version,
                             res.skipped, secs)
    rows, version, skipped = _run_spark(settings, spark, store, raw_table, raw_version, days, build, schema,
                                        out_table, window, (app_id, txn_version), who, other, fs)
    secs = round(time.perf_counter() - t0, 3)
    log.info("%s: %d rows in %d partition(s) → %s v%d (%.1f s)", who, rows, window.days, out_table, version, secs)
    return ExtractResult(out_table, window.to_dict(), rows, window.days, version, raw_version, skipped, secs)


def extract_tpm(settings: Settings, store: ArtifactStore, month: str | calendar.Month, *, force: bool = False, spark=None) -> ExtractResult:
    from ecdctr_pipeline.data.features import tpm_features

    plan = calendar.tpm_plan(month, settings.calendar)
    w = plan.data_window
    fs = settings.features.feature_schema()
    cols = ", ".join(fs.tpm_feature_names)

    def sql_for(source: str) -> str:
        return (f"SELECT {cols}, strftime(event_time AT TIME ZONE 'UTC', '%Y-%m-%d') AS {PARTITION} FROM {source} "
                f"WHERE event_time >= TIMESTAMPTZ '{w.start} 00:00:00+00' AND event_time < TIMESTAMPTZ '{w.end} 00:00:00+00' "
                f"ORDER BY {ROW_ORDER}")

    return _run(settings, store, domain="natural", out_table=paths.tpm_features(), window=plan.data_window,
                history_days=0, app_id=tpm_job(settings, month).app_id,
                build=lambda raw: tpm_features(raw, fs.tpm_feature_names), schema=fs.tpm_feature_schema(),
                force=force, who=f"extract tpm {plan.month}", spark=spark,
                sql_for=sql_for)


def complete_window(settings: Settings, domain: str, as_of: str | dt.date) -> calendar.Window:
    day = calendar.parse_date(as_of, what="--as-of")
    if domain == "natural":
        return calendar.cpm_plan(calendar.monday_on_or_before(day), settings.calendar).window
    if domain == "ad":
        return calendar.actr_plan(day, settings.calendar).window
    raise EcdctrError(f"unknown domain {domain!r}: expected natural or ad")


def extract_complete(settings: Settings, store: ArtifactStore, domain: str, as_of: str | dt.date, *, force: bool = False,
                     spark=None) -> ExtractResult:
    from ecdctr_pipeline.data.features import complete_features

    f = settings.features
    fs = f.feature_schema()
    window = complete_window(settings, domain, as_of)
    history = max(f.history_days, max(f.counter_windows_days))
    # the ad rows' sequences may take in the natural clicks (features.ad_history)
    mode = f.ad_history if domain == "ad" else "ad"
    split = f.source_sequence(domain)

    def build(raw, other=None):
        return complete_features(raw, window.start.isoformat(), window.end.isoformat(),
                                 max_seq_len=f.max_seq_len, history_days=f.history_days,
                                 counter_windows_days=f.counter_windows_days, other_clicks=other,
                                 other_sequence=split, raw_names=fs.names)

    def sql_for(source: str, other: str | None = None) -> str:
        from ecdctr_pipeline.data.features_duckdb import complete_features_sql

        return complete_features_sql(source, window.start.isoformat(), window.end.isoformat(),
                                     max_seq_len=f.max_seq_len, history_days=f.history_days,
                                     counter_windows_days=f.counter_windows_days, other_clicks=other,
                                     other_sequence=split, raw_names=fs.names)

    # the settings that shape the rows (the sequences' source included) are part of the commit's
    # identity: changing them recomputes the window
    app_id = complete_job(settings, domain, as_of).app_id
    return _run(settings, store, domain=domain, out_table=paths.complete_features(domain), window=window,
                history_days=history, app_id=app_id, build=build,
                schema=fs.complete_feature_schema(f.counter_windows_days, source_sequence=split), force=force,
                who=f"extract complete {domain} {as_of}", spark=spark, sql_for=sql_for,
                history_domain=None if mode == "ad" else "natural")
