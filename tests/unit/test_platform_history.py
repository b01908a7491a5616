"""``features.ad_history: platform`` through the extraction step (DuckDB engine): the ad rows'
sequences take in the user's natural clicks, the natural log is required and versioned with
the commit, counters and rows stay the ad domain's. (Both engines on a hand-built log:
``tests/integration/test_features_spark.py``.)"""

from __future__ import annotations

import datetime as dt
import shutil

import numpy as np
import pyarrow.compute as pc
import pytest

from ecdctr_pipeline.core import paths
from ecdctr_pipeline.core.schema import counter_names
from ecdctr_pipeline.data import delta, extract
from ecdctr_pipeline.data.simulate import simulate
from ecdctr_pipeline.data.store import open_store
from tests.conftest import tiny_settings

DAY = "2026-11-24"
KEYS = [("user_id", "ascending"), ("item_id", "ascending"), ("event_time", "ascending")]


def test_platform_history_needs_the_natural_log_and_only_lengthens_sequences(tmp_path):
    s = tiny_settings(f"file://{tmp_path / 'store'}", calendar={"actr_window_days": 7})
    store = open_store(s.store)
    simulate(store, dt.date(2026, 10, 20), dt.date(2026, 11, 24), "tiny", seed=5, domains=("ad",), progress=False)
    platform = s.model_copy(deep=True)
    platform.features.ad_history = "platform"
    with pytest.raises(extract.MissingDataError, match=r"natural clicks in the sequences\): no raw data at all in raw/natural"):
        extract.extract_complete(platform, store, "ad", DAY)
    assert delta.version(store, paths.complete_features("ad")) is None  # nothing half-written

    simulate(store, dt.date(2026, 10, 20), dt.date(2026, 11, 24), "tiny", seed=5, domains=("natural",),
             progress=False)
    table = paths.complete_features("ad")
    own = extract.extract_complete(s, store, "ad", DAY)
    a = delta.read(store, table)[0].sort_by(KEYS)
    both = extract.extract_complete(platform, store, "ad", DAY)
    assert not both.skipped and both.rows == own.rows  # another sequence source: the window is recomputed
    b = delta.read(store, table)[0].sort_by(KEYS)
    assert b.num_rows == a.num_rows
    for c in ("user_id", "item_id", "event_time", "click", *counter_names(s.features.counter_windows_days)):
        assert b[c].equals(a[c]), c  # the same rows and the ad domain's own counts
    la, lb = np.asarray(a["hist_len"]), np.asarray(b["hist_len"])
    assert np.all(lb >= la) and np.mean(lb > la) > 0.5  # natural clicks joined most ad rows' sequences
    natural_items = set(pc.unique(delta.read(store, paths.raw_table("natural"), columns=["item_id"])[0]["item_id"])
                        .to_pylist())
    ad_items = set(pc.unique(delta.read(store, paths.raw_table("ad"), columns=["item_id"])[0]["item_id"]).to_pylist())
    seq_items = set(pc.unique(pc.list_flatten(b["hist_item_ids"])).to_pylist())
    assert seq_items - ad_items and seq_items <= natural_items | ad_items
    # idempotent for unchanged raw tables; a new natural version recomputes
    assert extract.extract_complete(platform, store, "ad", DAY).skipped
    day, _ = delta.read(store, paths.raw_table("natural"), partitions=["2026-11-20"])
    delta.write(store, paths.raw_table("natural"), day)
    assert not extract.extract_complete(platform, store, "ad", DAY).skipped


def test_split_history_adds_the_natural_sequence_beside_the_ad_one(tmp_path):
    """``features.ad_history: split`` (MiNet's input): the ad sequences are those of ``ad``, the
    natural clicks form ``src_hist_*``; the gate checks the new columns; a table built under one
    column set is never extended under another."""
    from ecdctr_pipeline.quality import suites as quality

    s = tiny_settings(f"file://{tmp_path / 'store'}", calendar={"actr_window_days": 7})
    store = open_store(s.store)
    simulate(store, dt.date(2026, 10, 20), dt.date(2026, 11, 24), "tiny", seed=5, progress=False)
    split = s.model_copy(deep=True)
    split.features.ad_history = "split"
    table = paths.complete_features("ad")
    extract.extract_complete(split, store, "ad", DAY)
    b = delta.read(store, table)[0].sort_by(KEYS)
    src_len = np.asarray(b["src_hist_len"])
    assert np.array_equal(src_len, pc.list_value_length(b["src_hist_item_ids"]).to_numpy())
    assert np.mean(src_len > 0) > 0.5 and src_len.max() <= s.features.max_seq_len
    natural_items = set(pc.unique(delta.read(store, paths.raw_table("natural"), columns=["item_id"])[0]["item_id"])
                        .to_pylist())
    assert set(pc.unique(pc.list_flatten(b["src_hist_item_ids"])).to_pylist()) <= natural_items
    ok = quality.validate(split, store, table, "2026-11-23")
    assert ok["success"], [r for r in ok["results"] if not r["success"]]
    assert any(r["label"] == f"src_hist_item_ids no longer than {s.features.max_seq_len}" for r in ok["results"])

    # the same window under "ad" would drop the src_hist_* columns: refused, nothing written
    version = delta.version(store, table)
    with pytest.raises(extract.ExtractError, match=r"features/complete/ad holds other columns than these settings "
                                                   r"build \(new: none; not built any more: src_hist_category_ids"):
        extract.extract_complete(s, store, "ad", DAY)
    assert delta.version(store, table) == version

    # the ad-only sequences are those of "ad" (a fresh table)
    shutil.rmtree(tmp_path / "store" / table)
    extract.extract_complete(s, store, "ad", DAY)
    a = delta.read(store, table)[0].sort_by(KEYS)
    for c in a.column_names:
        assert b[c].equals(a[c]), c
