"""``features.ad_history: platform`` through the extraction step (DuckDB engine): the ad rows'
sequences take in the user's natural clicks, the natural log is required and versioned with
the commit, counters and rows stay the ad domain's. (Both engines on a hand-built log:
``tests/integration/test_features_spark.py``.)"""

from __future__ import annotations

import datetime as dt

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
    with pytest.raises(extract.MissingDataError, match=r"platform-wide history\): no raw data at all in raw/natural"):
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
