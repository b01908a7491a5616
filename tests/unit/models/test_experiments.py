"""``ecdctr experiments`` and ``ecdctr efficiency``: every table's variants on the same holdout
rows, paired lifts and orderings with intervals, the weekly compute accounting, and the report
files (a tiny smoke: that it runs, not the numbers)."""

import dataclasses
import datetime as dt
import json
import shutil

import numpy as np
import pytest

from ecdctr_pipeline.app import experiments
from ecdctr_pipeline.core import calendar
from ecdctr_pipeline.core.errors import EcdctrError
from ecdctr_pipeline.core.settings import Settings
from ecdctr_pipeline.data import delta
from ecdctr_pipeline.data.store import open_store
from ecdctr_pipeline.tiers import cpm, variants


def test_parse_tables_names_what_exists():
    assert [t.key for t in experiments.parse_tables("2, 6")] == ["2", "6"]
    with pytest.raises(EcdctrError, match="--table '7': expected one or more of main, 2, 3"):
        experiments.parse_tables("7")
    with pytest.raises(variants.VariantError, match="unknown variant 'nope'"):
        variants.get("nope")
    st = Settings()
    assert experiments.actr_days(st, dt.date(2026, 11, 23), 2) == [dt.date(2026, 11, 23), dt.date(2026, 11, 24)]
    with pytest.raises(EcdctrError, match="--days 0: at least one"):
        experiments.actr_days(st, dt.date(2026, 11, 23), 0)
    with pytest.raises(calendar.CalendarError, match="A-CTR day 2026-11-30 does not use the CPM of 2026-11-23"):
        experiments.actr_days(st, dt.date(2026, 11, 23), 8)
    # MiNet reads the ad features' natural sequence: "ad" is extended to "split", "platform" refused
    needs = {variants.SOURCE_SEQUENCE}
    assert variants.with_needed_features(st, needs).features.ad_history == "split" and st.features.ad_history == "ad"
    assert variants.with_needed_features(st, set()) is st
    platform = st.model_copy(deep=True)
    platform.features.ad_history = "platform"
    with pytest.raises(variants.VariantError, match=r"two sequences: features.ad_history split or ad \(got platform\)"):
        variants.with_needed_features(platform, needs)
    for t in experiments.TABLES.values():  # every table names registered variants
        assert t.reference in t.variants
        assert {v for a, _, b in t.orderings for v in (a, b)} <= set(t.variants) <= set(variants.REGISTRY)


def test_repretrain_window_is_whole_months_before_the_monday_with_the_cpm_tail():
    cal = calendar.CalendarSettings()
    p = cpm.repretrain_plan(calendar.cpm_plan("2026-11-23", cal), 6)
    assert p.window == calendar.Window(dt.date(2026, 5, 23), dt.date(2026, 11, 23))
    assert p.train_window.end == p.eval_window.start == dt.date(2026, 11, 22)
    assert cpm.repretrain_plan(calendar.cpm_plan("2026-08-31", cal), 6).window.start == dt.date(2026, 2, 28)
    with pytest.raises(calendar.CalendarError, match="months must be positive"):
        cpm.repretrain_plan(p, 0)


def test_historical_tables_keep_the_last_months_and_load_from_a_tpm_runs_files(tmp_path):
    from ecdctr_pipeline.data import embedding_sets as es

    months = ("2026-07", "2026-08", "2026-09")
    files = {}
    for j, m in enumerate(months):  # user 1 in every month, user 2 only in the first, user 3 from the second
        for side, ids in (("user", [1, 2] if j == 0 else [1, 3]), ("item", [7])):
            name = es.table_name(side, m)
            es.write_table(tmp_path / name, np.array(ids), np.full((len(ids), 4), j + 1.0))
            files[name] = tmp_path / name
    h = es.from_files("2026-10", months, files, 4)
    assert h.user_ids.tolist() == [1, 2, 3] and h.user_vectors.shape == (3, 3, 4) and h.dim == 4
    last2 = h.last(2)
    assert last2.months == months[1:] and last2.user_ids.tolist() == [1, 3]  # user 2 not seen in them
    assert last2.user_vectors[:, :, 0].tolist() == [[2.0, 3.0], [2.0, 3.0]]
    assert h.last(3).user_ids.tolist() == [1, 2, 3]
    with pytest.raises(EcdctrError, match="cannot keep the last 4 of its 3 months"):
        h.last(4)
    with pytest.raises(Exception, match="dimension 4, the manifest says 8"):
        es.from_files("2026-10", months, files, 8)


# variants the smoke leaves out: each is another parameter of a code path the smoke runs
# (a transfer policy: test_training's warm-start report; a month count: the tables' last(k); a
# head: test_layers builds and checks each); test time
SMOKE_LEAVES_OUT = {"transfer_embeddings", "transfer_mlp_without_bn", "tpm_months_2", "share_bottom", "conet",
                    "star", "tpm_dim_8", "tpm_dim_16", "tpm_dim_32", "tpm_dim_64"}


def _smoke(t: experiments.Table) -> experiments.Table:
    keep = tuple(v for v in t.variants if v not in SMOKE_LEAVES_OUT)
    return dataclasses.replace(t, variants=keep, reference=t.reference if t.reference in keep else keep[0],
                               orderings=tuple(o for o in t.orderings if o[0] in keep and o[2] in keep))


@pytest.mark.slow
def test_efficiency_and_every_table_smoke_on_one_tiny_day(cpm_trained_store, tmp_path):
    """One run of the runner serves the efficiency report and the tables (as the CLI's variants
    are trained once per day); every table with one variant of each family (``SMOKE_LEAVES_OUT``)."""
    from ecdctr_pipeline.app import efficiency
    from tests.conftest import tiny_settings

    shutil.copytree(cpm_trained_store, tmp_path / "store")
    # MiNet's variant extends the ad features by the natural sequence (features.ad_history: split);
    # experiments extract into fresh stores, and a table of the other column set is refused
    shutil.rmtree(tmp_path / "store" / "features" / "complete" / "ad")
    s = tiny_settings(f"file://{tmp_path / 'store'}")
    store = open_store(s.store)
    tables = [_smoke(t) for t in experiments.parse_tables("main,2,3,4,5,6,fig4")]
    assert all(t.orderings for t in tables if t.key != "fig4")  # each table still checks an ordering
    wanted = list(dict.fromkeys(v for t in tables for v in t.variants))
    r, runs = efficiency.measure(s, store, "2026-11-23", days=1, months=1, variants=tuple(wanted))

    # efficiency: rows are the windows' rows in the feature tables (nothing dropped or double counted)
    def rows(table, start, end):
        w = calendar.Window(dt.date.fromisoformat(start), dt.date.fromisoformat(end))
        return delta.dataset(store, table, w.partitions(), version=delta.version(store, table)).count_rows()

    tpm, cpm_step, re = r["steps"]
    assert re["rows"] == rows("features/complete/natural", "2026-10-23", "2026-11-22")
    assert cpm_step["rows"] == rows("features/complete/natural", "2026-10-26", "2026-11-22")
    assert tpm["rows"] == rows("features/tpm", "2026-04-01", "2026-10-01")
    assert tpm["runs_per_week"] == pytest.approx(7 * 12 / 365.25) and cpm_step["runs_per_week"] == 1
    w = r["weekly"]
    assert w["ecdctr_samples"] == pytest.approx(tpm["samples"] * tpm["runs_per_week"] + cpm_step["samples"])
    assert w["samples_ratio"] == pytest.approx(re["samples"] / w["ecdctr_samples"])
    assert all(step["seconds"] > 0 for step in r["steps"])
    (day_r,) = r["days"]
    assert day_r["day"] == "2026-11-23" and day_r["holdout_rows"] > 0 and 0 < day_r["coverage"] <= 1
    lift = r["gauc_lift"]
    assert lift["ci_low"] <= lift["lift"] <= lift["ci_high"]
    assert lift["lift"] == pytest.approx(day_r["ecdctr_gauc"] - day_r["repretrain_gauc"])
    assert r["gauc_no_worse"] == (lift["ci_high"] >= 0)
    md = efficiency.write_report(r, tmp_path / "eff", title="tiny")
    text = md.read_text()
    assert f"{w['samples_ratio']:.2f}x" in text and "2026-11-23" in text and text.count("hold") >= 3
    assert (tmp_path / "eff" / "efficiency.png").stat().st_size > 0
    assert json.loads((tmp_path / "eff" / "efficiency.json").read_text())["weekly"] == w

    # the tables, from the same runs
    (day,) = runs
    assert set(day["scores"]) == set(wanted) | {"repretrained"} and day["labels"].size == day_r["holdout_rows"]
    for v, scores in day["scores"].items():
        assert scores.shape == day["labels"].shape and np.all((scores >= 0) & (scores <= 1)), v
    # variants trained differently score differently
    assert not np.allclose(day["scores"]["ecdctr"], day["scores"]["target_only"])
    assert not np.allclose(day["scores"]["ecdctr"], day["scores"]["source_only"])
    assert day["training"]["ecdctr"]["epochs_run"] == s.actr.epochs and day["training"]["source_only"].keys() == {"seconds"}
    # Table 5's and Figure 4's models are their own: other TPM tables, other scores; Table 2's
    # multi-domain heads differ from Sample merging's shared MLP (same rows, same tuning)
    for a, b in (("tpm_months_1", "ecdctr"), ("tpm_dim_4", "ecdctr"), ("keep", "target_only"), ("minet", "target_only"),
                 ("keep", "target_only_tpm"), ("mmoe", "sample_merging")):
        assert not np.allclose(day["scores"][a], day["scores"][b]), (a, b)
    for h in ("mmoe", "sample_merging"):  # trained on both domains' rows
        info = day["training"][h]
        assert 0 < info["natural_rows"] < info["rows"] and info["rows"] == day["training"]["sample_merging"]["rows"], h
    for t in tables:
        summary = experiments.summarize(t, {"w0-s0": {"world": 0, "seed": 0, "days": [day]}})
        assert [x["variant"] for x in summary["rows"]] == list(t.variants) and summary["metric"] == "observed"
        gauc = {x["variant"]: x["gauc_mean"] for x in summary["rows"]}
        for o in summary["orderings"]:  # one replicate: a lift, no interval, no verdict
            assert o["lift"] == pytest.approx(gauc[o["a"]] - gauc[o["b"]])
            assert o["ci_low"] is None and o["p_holm"] is None and o["verdict"] == "unresolved (1 replicate)"
        assert summary["mde"] is None
        ref = next(x for x in summary["rows"] if x["variant"] == t.reference)
        assert ref["lift_vs_reference"] is None
        for x in summary["rows"]:
            if x["lift_vs_reference"] is not None:
                assert x["lift_vs_reference"]["lift"] == pytest.approx(x["gauc_mean"] - ref["gauc_mean"])
        md = experiments.write_table(summary, tmp_path / "paper", scale="tiny", seconds=1.0)
        text = md.read_text()
        assert all(variants.get(v).label in text for v in t.variants) and "95% CI over replicates" in text
        assert "undefined (one replicate)" in text
        assert all(f"not built: {x}" in text for x in t.not_built) and bool(t.not_built) == (t.key == "2")
        name = experiments.report_name(t.key)
        assert (tmp_path / "paper" / f"{name}.png").stat().st_size > 0
        assert json.loads((tmp_path / "paper" / f"{name}.json").read_text())["orderings"] == summary["orderings"]
        assert bool(summary["orderings"]) == (t.key != "fig4")  # the figure is a curve, no verdicts
        # every fine-tuned variant's loss curves and how its fit ended (early stopping off here:
        # every epoch ran, none stopped early); Source-only is not trained
        fitted = [x for x in summary["rows"] if x.get("fits")]
        assert fitted and "## Convergence" in text and (tmp_path / "paper" / f"{name}_loss.png").stat().st_size > 0
        for x in fitted:
            assert len(x["loss_curve"]) == s.actr.epochs and x["stopped_early"] == 0, x["variant"]
        assert all(not x.get("fits") for x in summary["rows"] if x["variant"] == "source_only")
    merging = day["training"]["sample_merging"]
    assert merging["rows"] > merging["natural_rows"] > 0 and merging["epochs_run"] == s.actr.epochs
    assert not np.allclose(day["scores"]["sample_merging"], day["scores"]["target_only"])


@pytest.mark.slow
def test_the_instrument_through_real_training_finds_a_planted_effect_and_no_a_a_difference(tmp_path):
    """Issue 31's check of the instrument, with real training at tiny: 6 simulated worlds, probe
    holdouts of 20x the day's ad volume through the extraction job, expected GAUC. Target-only
    plus 0.5% of the true click logit (a planted lift of the paper's size) is found; Target-only
    trained again under another seed (A/A) is not told apart from itself."""
    from tests.conftest import tiny_settings

    r = experiments.run_tables(tiny_settings(f"file://{tmp_path / 'unused'}"), [experiments.TABLES["aa"]],
                               worlds=[0, 1, 2, 3, 4, 5], train_seeds=[0], scale="tiny", monday="2026-11-23", days=1,
                               out_dir=tmp_path / "out", max_epochs=3, probe_multiple=20, planted=0.005)
    s = r["tables"]["aa"]
    assert s["metric"] == "expected" and len(s["replicates"]) == 6
    by = {o["a"]: o for o in s["orderings"]}
    planted, aa = by["planted"], by["target_only_reseeded"]
    assert 0.002 < planted["lift"] < 0.02 and planted["verdict"] == "holds", planted
    assert aa["verdict"] == "no difference detected", aa
    rows = {x["variant"]: x for x in s["rows"]}
    assert all(x["expected_mean"] < s["expected_ceiling"] for x in rows.values())
    # the probe is ~20x the holdout (Poisson volume, same users and items): its rows were all scored
    assert 10 < s["probe_rows"] / s["holdout_rows"] < 40
    assert rows["target_only"]["samples_seen"] == rows["target_only_reseeded"]["samples_seen"]  # equal budgets
    text = (tmp_path / "out" / "tableaa.md").read_text()
    assert "expected GAUC on probe holdouts" in text and "no difference detected" in text
    assert (tmp_path / "out" / "tableaa.png").stat().st_size > 0


@pytest.mark.slow
def test_experiments_on_a_stores_own_log_replicate_over_training_seeds_and_publish_nothing(cpm_trained_store,
                                                                                           tmp_path):
    """``--on-store`` (a real log brought in through ingest): the same protocol with the store's
    log as the one world, replicates the training seeds, the observed GAUC; features extracted
    in the store, every model trained in a scratch copy (nothing published into the store)."""
    from tests.conftest import tiny_settings

    shutil.copytree(cpm_trained_store, tmp_path / "store")
    s = tiny_settings(f"file://{tmp_path / 'store'}")
    store = open_store(s.store)
    before = sorted(k for k in store.list("") if not k.startswith("features/"))
    with pytest.raises(EcdctrError, match="no variant that needs a simulator's true probabilities \\(planted\\)"):
        experiments.run_tables(s, [experiments.TABLES["aa"]], worlds=[], train_seeds=[0], scale="own log",
                               monday="2026-11-23", days=1, out_dir=tmp_path / "out", on_store=store)
    r = experiments.run_tables(s, [experiments.TABLES["main"]], worlds=[], train_seeds=[0, 1], scale="own log",
                               monday="2026-11-23", days=1, out_dir=tmp_path / "out", max_epochs=2,
                               validation_days=0, on_store=store)
    m = r["tables"]["main"]
    assert m["metric"] == "observed" and [x["key"] for x in m["replicates"]] == ["s0", "s1"]
    assert all(x["world"] is None for x in m["replicates"]) and "tpm_taste_r2" not in m
    (o,) = m["orderings"]
    assert o["replicates"] == 2 and o["p"] is not None and len(o["lifts"]) == 2 and o["lifts"][0] != o["lifts"][1]
    text = (tmp_path / "out" / "main.md").read_text()
    assert "training seeds 0, 1 on the store's own log" in text and "the observed GAUC" in text
    assert sorted(k for k in store.list("") if not k.startswith("features/")) == before  # nothing published
