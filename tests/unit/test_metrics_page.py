"""``ecdctr metrics``: the daily model's history page from what the pipeline recorded."""

from __future__ import annotations

import json

import pytest

from ecdctr_pipeline.app.main import main
from ecdctr_pipeline.core import paths
from ecdctr_pipeline.core.settings import StoreSettings
from ecdctr_pipeline.data import artifacts
from ecdctr_pipeline.data.store import open_store


def _actr(store, day: str, gauc, blessing: artifacts.Blessing) -> artifacts.Manifest:
    m = artifacts.Manifest(kind="actr_model", artifact_id=day, logical_date=day, blessing=blessing,
                           metrics={"gauc": gauc, "gauc_coverage": 0.3}, run_id=f"scheduled__{day}T00:00:00+00:00")
    return artifacts.publish(store, paths.actr_model(day), {"model.keras": b"x"}, m)


def test_metrics_page_from_the_recorded_days(tmp_path, monkeypatch, capsys):
    """Four days — blessed and served, rejected, not evaluable, promoted — give one row each with the
    served model's GAUC on the same holdout, Target-only's from the evaluation report of the same
    attempt, the verdict and the served model's age; the HTML page renders in headless Chromium."""
    from PIL import Image

    monkeypatch.setenv("ECDCTR_STORE", f"file://{tmp_path}/store")
    store = open_store(StoreSettings(root=f"file://{tmp_path}/store"))
    first = _actr(store, "2026-11-21", 0.64, artifacts.Blessing(blessed=True, candidate_gauc=0.64, tolerance=0.002,
                                                                min_gauc=0.5))
    store.put_bytes(paths.evaluation_report("2026-11-21"), json.dumps(
        {"target_only": {"gauc": 0.60}, "actr_attempt": first.attempt}).encode())
    artifacts.publish(store, paths.serving_version(1), {"saved_model.pb": b"x"}, artifacts.Manifest(
        kind="serving_version", artifact_id="1", logical_date="2026-11-21",
        inputs=artifacts.Inputs(actr_model="2026-11-21")), flat=True)
    served = artifacts.Baseline(model="2026-11-21", gauc=0.63)
    _actr(store, "2026-11-22", 0.61, artifacts.Blessing(blessed=False, candidate_gauc=0.61, tolerance=0.002,
                                                        baseline=served, min_gauc=0.5))
    _actr(store, "2026-11-23", None, artifacts.Blessing(blessed=False, candidate_gauc=None, tolerance=0.002,
                                                        not_evaluable="no user with both classes"))
    _actr(store, "2026-11-24", 0.62, artifacts.Blessing(blessed=True, candidate_gauc=0.62, tolerance=0.002,
                                                        baseline=served, promoted={
                                                            "by": "oncall", "reason": "r", "at": "t", "verdict": "v"}))
    # a report of another attempt is not this model's: no Target-only figure from it
    store.put_bytes(paths.evaluation_report("2026-11-22"), json.dumps(
        {"target_only": {"gauc": 0.7}, "actr_attempt": "a-other"}).encode())
    out = tmp_path / "page"
    prom = tmp_path / "textfile" / "ecdctr.prom"
    assert main(["metrics", "--since", "2026-11-21", "--out", str(out), "--screenshot", "--prometheus", str(prom),
                 "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    rows = r["rows"]
    assert [(x["day"], x["verdict"], x["serving_version"], x["serving_age_days"]) for x in rows] == [
        ("2026-11-21", "blessed", 1, 0), ("2026-11-22", "rejected", 1, 1), ("2026-11-23", "not evaluable", 1, 2),
        ("2026-11-24", "promoted by oncall", 1, 3)]
    assert rows[0]["target_only_gauc"] == 0.60 and rows[0]["lift"] == pytest.approx(0.04)
    assert rows[1]["served_gauc"] == 0.63 and rows[1]["target_only_gauc"] is None
    assert rows[3]["run_id"] == "scheduled__2026-11-24T00:00:00+00:00"
    assert sorted(p.name for p in out.iterdir()) == ["metrics.html", "metrics.json", "metrics.md", "metrics.png",
                                                     "metrics_page.png"]
    md = (out / "metrics.md").read_text()
    assert "| 2026-11-22 | 0.6100 | 0.3000   | 2026-11-21 (0.6300)" in md
    html = (out / "metrics.html").read_text()
    assert "data:image/png;base64," in html and "<td class='bad'>rejected</td>" in html
    with Image.open(out / "metrics_page.png") as im:  # a rendered page, not a blank canvas
        assert im.size == (1600, 1100) and len(im.convert("RGB").getcolors(1 << 20) or []) > 50
    # the newest day as gauges, parsed as Prometheus reads the text format
    samples = {ln.split()[0]: float(ln.split()[1]) for ln in prom.read_text().splitlines() if not ln.startswith("#")}
    assert samples == {"ecdctr_actr_day_timestamp_seconds": 1795478400.0, "ecdctr_actr_gauc": 0.62,
                       "ecdctr_actr_gauc_coverage": 0.3, "ecdctr_actr_blessed": 1.0, "ecdctr_served_version": 1.0,
                       "ecdctr_served_model_age_days": 3.0}
    assert prom.read_text().count("# TYPE ") == 6 and [p.name for p in prom.parent.iterdir()] == ["ecdctr.prom"]
    assert main(["metrics", "--since", "2026-11-25", "--until", "2026-11-21"]) == 2
    assert "is before --since" in capsys.readouterr().err
    assert main(["metrics", "--since", "2026-12-01"]) == 2
    assert "no A-CTR model" in capsys.readouterr().err
