"""``ecdctr experiments``: every table's variants on the same holdout rows, paired lifts and
orderings with intervals, and the report files (a tiny smoke: that it runs, not the numbers)."""

import json
import shutil

import numpy as np
import pytest

from ecdctr_pipeline.app import experiments
from ecdctr_pipeline.core.errors import EcdctrError
from ecdctr_pipeline.data.store import open_store
from ecdctr_pipeline.tiers import variants


def test_parse_tables_names_what_exists():
    assert [t.key for t in experiments.parse_tables("3, 6")] == ["3", "6"]
    with pytest.raises(EcdctrError, match="--table '2'.*not built"):
        experiments.parse_tables("2")
    with pytest.raises(variants.VariantError, match="unknown variant 'nope'"):
        variants.get("nope")
    for t in experiments.TABLES.values():  # every table names registered variants
        assert t.reference in t.variants
        assert {v for a, _, b in t.orderings for v in (a, b)} <= set(t.variants) <= set(variants.REGISTRY)


def test_tables_3_4_6_smoke_on_one_tiny_day(cpm_trained_store, tmp_path):
    from tests.conftest import tiny_settings

    shutil.copytree(cpm_trained_store, tmp_path / "store")
    s = tiny_settings(f"file://{tmp_path / 'store'}")
    tables = experiments.parse_tables("3,4,6")
    wanted = list(dict.fromkeys(v for t in tables for v in t.variants))
    (day,) = experiments.run_days(s, open_store(s.store), experiments.calendar.parse_date("2026-11-23"), 1, wanted)
    assert set(day["scores"]) == set(wanted) and day["labels"].size > 0
    for v, scores in day["scores"].items():
        assert scores.shape == day["labels"].shape and np.all((scores >= 0) & (scores <= 1)), v
    # variants trained differently score differently
    assert not np.allclose(day["scores"]["ecdctr"], day["scores"]["target_only"])
    assert not np.allclose(day["scores"]["ecdctr"], day["scores"]["source_only"])
    for t in tables:
        summary = experiments.summarize(t, {0: [day]}, n_boot=200)
        assert [r["variant"] for r in summary["rows"]] == list(t.variants)
        for o in summary["orderings"]:
            assert o["ci_low"] <= o["lift"] <= o["ci_high"]
            assert o["verdict"] in ("holds", "does not hold", "reversed", "unresolved")
        ref = next(r for r in summary["rows"] if r["variant"] == t.reference)
        assert ref["lift_vs_reference"] is None
        for r in summary["rows"]:
            if r["lift_vs_reference"] is not None:
                assert r["lift_vs_reference"]["lift"] == pytest.approx(r["gauc_mean"] - ref["gauc_mean"])
        md = experiments.write_table(summary, tmp_path / "paper", scale="tiny", seconds=1.0)
        text = md.read_text()
        assert all(variants.get(v).label in text for v in t.variants) and "95% CI" in text
        assert (tmp_path / "paper" / f"table{t.key}.png").stat().st_size > 0
        assert json.loads((tmp_path / "paper" / f"table{t.key}.json").read_text())["orderings"]
    assert "not built: Sample merging" in (tmp_path / "paper" / "table4.md").read_text()
