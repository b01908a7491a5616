"""The efficiency claim's measurement (``ecdctr efficiency``) on the shared tiny store: the
re-pretraining baseline's window, the weekly accounting and the report."""

import datetime as dt
import json
import shutil

import pytest

from ecdctr_pipeline.core import calendar
from ecdctr_pipeline.data import delta
from ecdctr_pipeline.data.store import open_store
from ecdctr_pipeline.tiers import cpm


def test_repretrain_window_is_whole_months_before_the_monday_with_the_cpm_tail():
    cal = calendar.CalendarSettings()
    p = cpm.repretrain_plan(calendar.cpm_plan("2026-11-23", cal), 6)
    assert p.window == calendar.Window(dt.date(2026, 5, 23), dt.date(2026, 11, 23))
    assert p.train_window.end == p.eval_window.start == dt.date(2026, 11, 22)
    assert cpm.repretrain_plan(calendar.cpm_plan("2026-08-31", cal), 6).window.start == dt.date(2026, 2, 28)
    with pytest.raises(calendar.CalendarError, match="months must be positive"):
        cpm.repretrain_plan(p, 0)


def test_efficiency_measures_both_sides_on_the_same_days_and_writes_its_report(cpm_trained_store, tmp_path):
    from ecdctr_pipeline.app import efficiency
    from tests.conftest import tiny_settings

    shutil.copytree(cpm_trained_store, tmp_path / "store")
    s = tiny_settings(f"file://{tmp_path / 'store'}")
    store = open_store(s.store)
    r = efficiency.measure(s, store, "2026-11-23", days=1, months=2)

    tpm, cpm_step, re = r["steps"]
    # rows are the windows' rows in the feature tables (nothing dropped or double counted)
    def rows(table, start, end):
        w = calendar.Window(dt.date.fromisoformat(start), dt.date.fromisoformat(end))
        return delta.dataset(store, table, w.partitions(), version=delta.version(store, table)).count_rows()

    assert re["rows"] == rows("features/complete/natural", "2026-09-23", "2026-11-22")
    assert cpm_step["rows"] == rows("features/complete/natural", "2026-10-26", "2026-11-22")
    assert tpm["rows"] == rows("features/tpm", "2026-04-01", "2026-10-01")
    assert tpm["runs_per_week"] == pytest.approx(7 * 12 / 365.25) and cpm_step["runs_per_week"] == 1
    w = r["weekly"]
    assert w["ecdctr_samples"] == pytest.approx(tpm["samples"] * tpm["runs_per_week"] + cpm_step["samples"])
    assert w["samples_ratio"] == pytest.approx(re["samples"] / w["ecdctr_samples"])
    assert all(s_["seconds"] > 0 for s_ in r["steps"])
    (day,) = r["days"]
    assert day["day"] == "2026-11-23" and day["holdout_rows"] > 0 and 0 < day["coverage"] <= 1
    lift = r["gauc_lift"]
    assert lift["ci_low"] <= lift["lift"] <= lift["ci_high"]
    assert lift["lift"] == pytest.approx(day["ecdctr_gauc"] - day["repretrain_gauc"])
    assert r["gauc_no_worse"] == (lift["ci_high"] >= 0)

    md = efficiency.write_report(r, tmp_path / "out", title="tiny")
    text = md.read_text()
    assert f"{w['samples_ratio']:.2f}x" in text and "2026-11-23" in text
    assert text.count("hold") >= 3 and (tmp_path / "out" / "efficiency.png").stat().st_size > 0
    assert json.loads((tmp_path / "out" / "efficiency.json").read_text())["weekly"] == w
