"""Feature tables are written in a fixed row order: the same raw data extracted twice (e.g. a
re-simulated store in ``ecdctr experiments``) gives byte-identical tables, so a retraining
reads the same batches. (Spark's path sorts the same way: ``extract._run_spark``.)"""

from __future__ import annotations

import datetime as dt
import shutil

import pyarrow.compute as pc

from ecdctr_pipeline.core import paths
from ecdctr_pipeline.data import delta, extract
from ecdctr_pipeline.data.features import ROW_ORDER_COLUMNS
from ecdctr_pipeline.data.simulate import simulate
from ecdctr_pipeline.data.store import open_store
from tests.conftest import tiny_settings


def test_the_same_raw_data_extracts_to_the_same_rows_in_the_same_order(tmp_path):
    a = tiny_settings(f"file://{tmp_path / 'a'}", calendar={"actr_window_days": 7})
    simulate(open_store(a.store), dt.date(2026, 10, 20), dt.date(2026, 11, 24), "tiny", seed=7, domains=("ad",),
             progress=False)
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    b = tiny_settings(f"file://{tmp_path / 'b'}", calendar={"actr_window_days": 7})
    tables = []
    for s in (a, b):
        extract.extract_complete(s, open_store(s.store), "ad", "2026-11-24")
        t = delta.read(open_store(s.store), paths.complete_features("ad"))[0]
        tables.append(t.take(pc.sort_indices(t["dt"])))  # files in day order (the trainers' order), rows as written
    assert tables[0].num_rows > 1000 and tables[0].equals(tables[1])
    t = tables[0]
    keys = list(zip(*(t[c].to_pylist() for c in ROW_ORDER_COLUMNS)))
    assert keys == sorted(keys)  # (dt, event_time, user, item)
