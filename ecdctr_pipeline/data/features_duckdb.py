"""The complete features in DuckDB SQL: a single-machine reference engine.

Same semantics as :func:`ecdctr_pipeline.data.features.complete_features` (point in time at day
start: only the rows of the days before an impression's UTC day count). Used by ``make bench-features``
as the reference Spark is measured against, and by the tests as an independent check of
the Spark transformation.
"""

from __future__ import annotations

from typing import Sequence

from ecdctr_pipeline.data.features import DAY_US, ROW_ORDER
from ecdctr_pipeline.core.schema import (
    PARTITION, SEQ_CATS, SEQ_ITEMS, SEQ_LEN, SRC_SEQ_CATS, SRC_SEQ_ITEMS, SRC_SEQ_LEN, counter_names,
)


def complete_features_sql(source: str, start: str, end: str, *, max_seq_len: int, history_days: int,
                          counter_windows_days: Sequence[int], other_clicks: str | None = None,
                          other_sequence: bool = False, raw_names: Sequence[str]) -> str:
    """SQL over ``source`` (a table name or ``read_parquet([...])``) giving the complete features.
    ``other_clicks``: another domain's raw rows, whose clicks join the behaviour sequences only
    (or, with ``other_sequence``, form the ``src_hist_*`` sequence of their own). ``raw_names``: the
    raw columns carried into the features, in order (the feature schema's)."""
    if other_sequence and other_clicks is None:
        raise ValueError("other_sequence needs other_clicks")
    counters = []
    for side in ("user", "item"):
        key = f"{side}_id"
        for d in counter_windows_days:
            frame = f"(PARTITION BY {key} ORDER BY _day RANGE BETWEEN {d} PRECEDING AND 1 PRECEDING)"
            counters.append(f"CAST(count(*) FILTER (WHERE _own) OVER {frame} AS INTEGER) AS {side}_imp_{d}d")
            counters.append(f"CAST(coalesce(sum(click) FILTER (WHERE _own) OVER {frame}, 0) AS INTEGER) "
                            f"AS {side}_clk_{d}d")
    hist_frame = f"(PARTITION BY user_id ORDER BY _day RANGE BETWEEN {history_days} PRECEDING AND 1 PRECEDING)"
    names = ", ".join(raw_names)
    day = f"strftime(event_time AT TIME ZONE 'UTC', '%Y-%m-%d') AS {PARTITION}"
    day_no = f"CAST(floor(epoch_us(event_time) / {DAY_US}) AS BIGINT)"  # the UTC day, as days since the epoch
    other = "" if other_clicks is None else f"""
  UNION ALL BY NAME
  SELECT user_id, item_id, category_id, click, {day}, epoch_us(event_time) AS _ts, {day_no} AS _day, FALSE AS _own
  FROM {other_clicks} WHERE click = 1"""
    # (list column, which clicks, output columns): the rows' own sequence, and the other domain's
    seqs = [("_h", " AND _own" if other_sequence else "", (SEQ_ITEMS, SEQ_CATS, SEQ_LEN))] + (
        [("_o", " AND NOT _own", (SRC_SEQ_ITEMS, SRC_SEQ_CATS, SRC_SEQ_LEN))] if other_sequence else [])
    item = "{'ts': _ts, 'item_id': item_id, 'category_id': category_id}"
    lists = [f"list_sort(coalesce(list({item}) FILTER (WHERE click = 1{cond}) OVER {hist_frame}, [])) AS {h}"
             for h, cond, _ in seqs]
    last = [f"{h}[greatest(len({h}) - {max_seq_len} + 1, 1):] AS {h}_last" for h, _, _ in seqs]
    out = [f"[x.item_id FOR x IN {h}_last] AS {items}, [x.category_id FOR x IN {h}_last] AS {cats}, "
           f"CAST(len({h}_last) AS INTEGER) AS {length}" for h, _, (items, cats, length) in seqs]
    return f"""
WITH r AS (
  SELECT {names}, {day}, epoch_us(event_time) AS _ts, {day_no} AS _day, TRUE AS _own
  FROM {source}{other}
), h AS (
  SELECT *,
    {", ".join(lists)},
    {", ".join(counters)}
  FROM r
), s AS (
  SELECT *, {", ".join(last)} FROM h
)
SELECT {names},
  {", ".join(out)},
  {", ".join(counter_names(counter_windows_days))},
  {PARTITION}
FROM s
WHERE {PARTITION} >= '{start}' AND {PARTITION} < '{end}' AND _own
ORDER BY {ROW_ORDER}
"""
