"""Days recorded as having no impressions (``ecdctr ingest --empty-day``): windows accept them up to
``calendar.max_empty_days`` and still fail on an unrecorded gap; the gate reports them; ingesting
rows for such a day removes its record."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from ecdctr_pipeline.app.main import main
from ecdctr_pipeline.core import paths
from ecdctr_pipeline.data import delta, empty_days, extract
from ecdctr_pipeline.data.simulate import simulate
from ecdctr_pipeline.data.store import open_store
from ecdctr_pipeline.modeling import training
from ecdctr_pipeline.quality.gates import gate
from ecdctr_pipeline.tiers import actr
from tests.conftest import tiny_settings

GAP = "2026-11-20"


def test_a_recorded_empty_day_is_accepted_and_reported_an_unrecorded_gap_fails(tmp_path, capsys):
    import yaml

    from ecdctr_pipeline.core.settings import settings_dict

    s = tiny_settings(f"file://{tmp_path / 'store'}", calendar={"actr_window_days": 7})
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump(settings_dict(s, mask=False)))
    store = open_store(s.store)
    simulate(store, dt.date(2026, 10, 20), dt.date(2026, 11, 19), "tiny", seed=5, domains=("ad",), progress=False)
    simulate(store, dt.date(2026, 11, 21), dt.date(2026, 11, 24), "tiny", seed=5, domains=("ad",), progress=False)
    table = paths.complete_features("ad")
    with pytest.raises(extract.MissingDataError, match=f"no raw data for {GAP} in raw/ad \\(window \\[2026-11-17, "):
        extract.extract_complete(s, store, "ad", "2026-11-24")

    # a day with impressions cannot be recorded as empty; the gap can (one line, exit 0)
    assert main(["--config", str(cfg), "ingest", "--domain", "ad", "--empty-day", "2026-11-19"]) != 0
    err = capsys.readouterr().err.strip()
    assert err == "ecdctr: error: raw/ad has impressions on 2026-11-19: a day with data cannot be recorded as empty"
    assert main(["--config", str(cfg), "ingest", "--domain", "ad", "--empty-day", GAP,
                 "--now", "2026-11-25T00:00:00"]) == 0
    assert capsys.readouterr().out.strip() == f"raw/ad: {GAP} recorded as a day with no impressions"
    assert empty_days.recorded(store, "ad") == {GAP} and empty_days.recorded(store, "natural") == set()

    # the window accepts it: every other day extracted, nothing invented for the empty one
    r = extract.extract_complete(s, store, "ad", "2026-11-24")
    feats = delta.read(store, table)[0]
    days = sorted(set(feats["dt"].to_pylist()))
    assert GAP not in days and days[0] == "2026-11-17" and days[-1] == "2026-11-23" and r.rows == feats.num_rows
    assert feats.num_rows == delta.read(store, paths.raw_table("ad"), partitions=days)[0].num_rows
    # the trainer's windows accept it too, and read every row of the other days
    args = actr.resolve(s, store, actr.plan(s, "2026-11-24"), target_only=True)
    assert args.data.empty_days == (GAP,)
    fit_src, _ = training.training_sources(args)
    assert fit_src.num_rows == pc.sum(pc.less(feats["dt"], "2026-11-23")).as_py()
    # ... up to calendar.max_empty_days a window
    strict = s.model_copy(deep=True)
    strict.calendar.max_empty_days = 0
    with pytest.raises(empty_days.EmptyDayError, match=rf"holds 1 days recorded as empty \({GAP}\), more than "
                                                       r"calendar.max_empty_days 0"):
        extract.extract_complete(strict, store, "ad", "2026-11-24", force=True)
    with pytest.raises(empty_days.EmptyDayError, match="more than calendar.max_empty_days 0"):
        actr.resolve(strict, store, actr.plan(strict, "2026-11-24"), target_only=True)

    # the gate of the A-CTR run whose holdout is the empty day accepts and reports it
    g = gate("actr", s, store, "2026-11-21")
    assert g["empty_days"] == [GAP] and g["checks"] == 0
    assert main(["--config", str(cfg), "gate", "actr", "--as-of", "2026-11-21"]) == 0
    assert capsys.readouterr().out.strip().endswith(f"accepted empty day(s): {GAP}")

    # rows ingested for the day later: the data wins, the record goes
    day_before = delta.read(store, paths.raw_table("ad"), partitions=["2026-11-19"])[0].drop_columns(["dt"])
    shifted = day_before.set_column(0, "event_time", pc.add(day_before["event_time"],
                                                            pa.scalar(dt.timedelta(days=1), pa.duration("us"))))
    pq.write_table(shifted, tmp_path / "late.parquet")
    assert main(["--config", str(cfg), "ingest", "--domain", "ad", "--input", str(tmp_path / "late.parquet"),
                 "--now", "2026-11-25T00:00:00"]) == 0
    assert empty_days.recorded(store, "ad") == set() and GAP in delta.partitions(store, paths.raw_table("ad"))
