"""Feature transformations: Spark DataFrame → DataFrame functions without I/O.

``complete_features`` is point-in-time correct: every value of a row is computed from the
rows of the same user (or item) whose ``event_time`` is **strictly before** the row's own,
so an impression never sees its own click, nor anything logged at the same instant.
"""

from __future__ import annotations

from typing import Sequence

from .schema import (
    PARTITION, RAW_NAMES, SEQ_CATS, SEQ_ITEMS, SEQ_LEN, TPM_FEATURE_NAMES, counter_names,
)

DAY_US = 86_400 * 1_000_000


def with_dt(raw):
    """Add ``dt`` = the UTC date of ``event_time`` (the session time zone is UTC)."""
    from pyspark.sql import functions as F

    return raw.withColumn(PARTITION, F.date_format(F.col("event_time"), "yyyy-MM-dd"))


def tpm_features(raw):
    """The basic features of the tiny pre-trained model, per impression."""
    return with_dt(raw).select(*TPM_FEATURE_NAMES, PARTITION)


def complete_features(raw, start: str, end: str, *, max_seq_len: int, history_days: int,
                      counter_windows_days: Sequence[int]):
    """All features for impressions with ``start <= dt < end`` (ISO dates).

    ``raw`` must also hold the history before ``start`` (``max(history_days,
    max(counter_windows_days))`` days) for the sequences and counters to be complete.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    df = with_dt(raw).withColumn("_ts", F.unix_micros(F.col("event_time")))
    by_user = Window.partitionBy("user_id").orderBy("_ts")
    by_item = Window.partitionBy("item_id").orderBy("_ts")
    clicked = F.when(F.col("click") == 1, F.struct(F.col("_ts"), F.col("item_id"), F.col("category_id")))
    hist = F.array_sort(F.collect_list(clicked).over(by_user.rangeBetween(-history_days * DAY_US, -1)))
    df = df.withColumn("_hist", F.slice(hist, F.greatest(F.size(hist) - max_seq_len + 1, F.lit(1)), max_seq_len))
    cols = []
    for side, w in (("user", by_user), ("item", by_item)):
        for d in counter_windows_days:
            frame = w.rangeBetween(-d * DAY_US, -1)
            cols.append(F.count(F.lit(1)).over(frame).cast("int").alias(f"{side}_imp_{d}d"))
            cols.append(F.coalesce(F.sum(F.col("click").cast("int")).over(frame), F.lit(0)).cast("int")
                        .alias(f"{side}_clk_{d}d"))
    out = df.select(
        *RAW_NAMES,
        F.transform("_hist", lambda x: x["item_id"]).alias(SEQ_ITEMS),
        F.transform("_hist", lambda x: x["category_id"]).alias(SEQ_CATS),
        F.size("_hist").cast("int").alias(SEQ_LEN),
        *cols,
        PARTITION,
    )
    names = list(RAW_NAMES) + [SEQ_ITEMS, SEQ_CATS, SEQ_LEN] + list(counter_names(counter_windows_days)) + [PARTITION]
    return out.where((F.col(PARTITION) >= start) & (F.col(PARTITION) < end)).select(*names)
