"""Feature transformations: Spark DataFrame → DataFrame functions without I/O.

``complete_features`` is point-in-time correct at **day start**: every value of a row is
computed from the rows of the same user (or item) on the days **before** the row's own UTC day
(``dt``), never from the same day. All rows of a (user, day) share their user-side values, an
impression never sees its own click nor any click of its day, and the values are exactly what
a daily feature snapshot taken at 00:00 UTC holds — what the serving path's feature lookup
serves all day (README, "Features: point in time"). A counter over ``d`` days counts the rows of
``[day start - d days, day start)``; the behaviour sequence holds the clicks of the
``history_days`` days before the day.

Why not "strictly before the impression's event_time" (the SPEC's first definition): with
per-event counters, the rows of one (user, day) that follow a click carry one more click and
one more history step whether or not clicks depend on history, which inside a GAUC group
orders the later, unclicked rows above the clicked ones (issue 31 measured 0.28 GAUC for the
counters alone on simulated ad holdouts), and a server would need a real-time counter
service to reproduce them. Day-start snapshots are what a batch feature store serves.
"""

from __future__ import annotations

from typing import Sequence

from ecdctr_pipeline.core.schema import (
    PARTITION, SEQ_CATS, SEQ_ITEMS, SEQ_LEN, SRC_SEQ_CATS, SRC_SEQ_ITEMS, SRC_SEQ_LEN, counter_names,
)

DAY_US = 86_400 * 1_000_000
# rows are written in this order (both engines): a retraining on the same data reads the same
# batches (an engine's output order, e.g. parallel DuckDB or a Spark shuffle, is not stable)
ROW_ORDER_COLUMNS = (PARTITION, "event_time", "user_id", "item_id")
ROW_ORDER = ", ".join(ROW_ORDER_COLUMNS)


def with_dt(raw):
    """Add ``dt`` = the UTC date of ``event_time`` (the session time zone is UTC)."""
    from pyspark.sql import functions as F

    return raw.withColumn(PARTITION, F.date_format(F.col("event_time"), "yyyy-MM-dd"))


def tpm_features(raw, names: Sequence[str]):
    """The basic features of the tiny pre-trained model, per impression (``names``: the feature
    schema's ``tpm_feature_names``)."""
    return with_dt(raw).select(*names, PARTITION)


def trailing_counters(df, key: str, side: str, windows_days: Sequence[int]):
    """Impressions and clicks of the same ``key`` on the ``d`` days before each (key, day): one
    row per (``key``, ``_day``) of ``df`` with ``<side>_imp_<d>d`` and ``<side>_clk_<d>d``.

    Day-start snapshots make every row of a (key, day) share its counts, so the rows are first
    counted per (key, day) and each window is a range frame over those daily totals (days
    ``[day - d, day - 1]``): the sort and the frames see one row per key and day, not one per
    impression (the per-impression form, a running total over the rows and a query row per
    window, sorted and grouped again, cost most of the job)."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    daily = df.groupBy(key, "_day").agg(F.count(F.lit(1)).alias("_n"), F.sum(F.col("click").cast("long")).alias("_c"))
    out = [F.col(key), F.col("_day")]
    for d in windows_days:
        frame = Window.partitionBy(key).orderBy("_day").rangeBetween(-d, -1)
        out += [F.coalesce(F.sum("_n").over(frame), F.lit(0)).cast("int").alias(f"{side}_imp_{d}d"),
                F.coalesce(F.sum("_c").over(frame), F.lit(0)).cast("int").alias(f"{side}_clk_{d}d")]
    return daily.select(*out)


def complete_features(raw, start: str, end: str, *, max_seq_len: int, history_days: int,
                      counter_windows_days: Sequence[int], other_clicks=None, other_sequence: bool = False,
                      raw_names: Sequence[str] | None = None):
    """All features for impressions with ``start <= dt < end`` (ISO dates). ``raw_names``: the raw
    columns carried into the features, in order (the feature schema's; default: all of ``raw``'s).

    ``raw`` must also hold the history before ``start`` (``max(history_days,
    max(counter_windows_days))`` days) for the sequences and counters to be complete.
    Impressions are identified by (user_id, item_id, event_time), unique in the raw tables.

    ``other_clicks``: another domain's raw rows (same columns, same days): their clicks join the
    behaviour sequences (platform-wide history, ``features.ad_history: platform``); they add no
    rows and no counts. With ``other_sequence`` they form a second sequence of their own instead
    (``src_hist_*``, ``features.ad_history: split``) and the rows' sequences keep their own domain's.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    df = (with_dt(raw).withColumn("_ts", F.unix_micros(F.col("event_time")))
          .withColumn("_day", F.floor(F.col("_ts") / F.lit(DAY_US)).cast("long")))
    seq_source = df.withColumn("_own", F.lit(True))
    if other_clicks is not None:
        other = (with_dt(other_clicks).where(F.col("click") == 1)
                 .select("user_id", "item_id", "category_id", "click", PARTITION,
                         F.unix_micros(F.col("event_time")).alias("_ts"), F.lit(False).alias("_own"))
                 .withColumn("_day", F.floor(F.col("_ts") / F.lit(DAY_US)).cast("long")))
        seq_source = seq_source.unionByName(other, allowMissingColumns=True)
    if other_sequence and other_clicks is None:
        raise ValueError("other_sequence needs other_clicks")
    # the behaviour sequences, per (user, day): each day's clicks collected once, then the
    # frame of the `history_days` days before concatenated and sorted (every row of a user's day
    # shares them); the clicks of `seq_source` rows that are not the rows' own domain join only
    # the sequences
    click = F.col("click") == 1

    def clicks(which):
        return F.collect_list(F.when(click & which, F.struct(F.col("_ts"), F.col("item_id"), F.col("category_id"))))

    lists = [("_hist", F.col("_own") if other_sequence else F.lit(True))] + (
        [("_src", ~F.col("_own"))] if other_sequence else [])
    daily = seq_source.groupBy("user_id", "_day").agg(*[clicks(which).alias(name) for name, which in lists])
    frame = Window.partitionBy("user_id").orderBy("_day").rangeBetween(-history_days, -1)  # the days before

    def last_clicks(name):  # the last max_seq_len clicks of the frame's days
        hist = F.array_sort(F.flatten(F.collect_list(name).over(frame)))
        return F.slice(hist, F.greatest(F.size(hist) - max_seq_len + 1, F.lit(1)), max_seq_len)

    user_hist = daily.select("user_id", "_day", *[last_clicks(name).alias(name) for name, _ in lists])
    in_window = (F.col(PARTITION) >= start) & (F.col(PARTITION) < end)
    targets = df.where(in_window)
    # the left joins keep every impression of the window: each (user, day) and (item, day) of a
    # target is a day of `df` (the target itself), so every one has its sequences and counters
    out = (targets.join(user_hist, ["user_id", "_day"], "left")
           .join(trailing_counters(df, "user_id", "user", counter_windows_days), ["user_id", "_day"], "left")
           .join(trailing_counters(df, "item_id", "item", counter_windows_days), ["item_id", "_day"], "left"))
    sequences = [("_hist", SEQ_ITEMS, SEQ_CATS, SEQ_LEN)] + (
        [("_src", SRC_SEQ_ITEMS, SRC_SEQ_CATS, SRC_SEQ_LEN)] if other_sequence else [])
    return out.select(
        *(raw_names or raw.columns),
        *[c for src, items, cats, length in sequences for c in (
            F.transform(src, lambda x: x["item_id"]).alias(items),
            F.transform(src, lambda x: x["category_id"]).alias(cats),
            F.size(src).cast("int").alias(length))],
        *[F.coalesce(F.col(n), F.lit(0)).cast("int").alias(n) for n in counter_names(counter_windows_days)],
        PARTITION,
    )
