"""The seed-replicate protocol's arithmetic: configurations per tier, t intervals over
replicates, the replicates a decision needs (``ecdctr replicate``)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import stats

from ecdctr_pipeline.app import replicates
from ecdctr_pipeline.core.errors import EcdctrError


def test_vary_one_tier_keeps_the_others_at_the_first_seed():
    cs = replicates.configs([3, 5, 7], ["all", "cpm", "target_only"])
    assert [c.cpm for c in cs["all"]] == [3, 5, 7] and all(c.tpm == c.cpm == c.actr == c.target_only for c in cs["all"])
    assert [(c.tpm, c.cpm, c.actr, c.target_only) for c in cs["cpm"]] == [(3, 3, 3, 3), (3, 5, 3, 3), (3, 7, 3, 3)]
    assert [c.target_only for c in cs["target_only"]] == [3, 5, 7] and {c.actr for c in cs["target_only"]} == {3}


@pytest.mark.parametrize("seeds, vary", [([], ["all"]), ([1, 1], ["all"]), ([0, 1], ["bn"]), ([0, 1], [])])
def test_bad_seeds_or_tiers_are_refused(seeds, vary):
    with pytest.raises(EcdctrError):
        replicates.configs(seeds, vary)


def test_the_interval_is_a_t_interval_over_replicates():
    x = [0.02, -0.01, 0.05, 0.00]
    r = replicates.seed_interval(x)
    sd = stats.tstd(x)
    half = stats.t.ppf(0.975, 3) * sd / 2
    assert r["n"] == 4 and r["sd"] == pytest.approx(sd)
    assert (r["ci_low"], r["ci_high"]) == pytest.approx((0.015 - half, 0.015 + half))
    assert replicates.seed_interval([0.1])["ci_low"] is None  # one replicate: no interval


def test_seeds_needed_grows_with_the_spread_and_shrinks_with_the_effect():
    n = replicates.seeds_needed(0.05, 0.02)
    assert stats.t.ppf(0.975, n - 1) * 0.05 / n ** 0.5 <= 0.02 < stats.t.ppf(0.975, n - 2) * 0.05 / (n - 1) ** 0.5
    assert replicates.seeds_needed(0.10, 0.02) > n > replicates.seeds_needed(0.05, 0.05)
    assert replicates.seeds_needed(0.05, 0.0) is None


def _result(rng, lifts):
    """A replicate result whose E-CDCTR scores are Target-only's plus ``lift`` x label noise."""
    labels = rng.integers(0, 2, 400)
    users = np.repeat(np.arange(40), 10)
    base = rng.normal(size=400)
    runs = {}
    for v, ls in lifts.items():
        runs[v] = [{"config": {"tpm": i, "cpm": i, "actr": i, "target_only": i}, "days": [
            {"day": "2017-12-05", "labels": labels, "users": users, "target_only": base,
             "ecdctr": base + lift * (labels - 0.5) * 4,
             "training": {"target_only": {"epochs_run": 3}, "ecdctr": {"epochs_run": 2}}}]}
            for i, lift in enumerate(ls)]
    return {"monday": "2017-12-04", "days": ["2017-12-05"], "seeds": [0, 1, 2], "runs": runs}


def test_the_report_gives_the_seed_interval_the_tier_shares_and_the_paper_beside_it(tmp_path):
    from ecdctr_pipeline.core.settings import Settings

    s = replicates.summarize(_result(np.random.default_rng(0), {"all": [0.0, 0.3, 0.6], "actr": [0.3, 0.3, 0.3],
                                                                "cpm": [0.0, 0.5, 1.0]}), n_boot=50)
    a = s["vary"]["all"]
    lifts = [r["lift"] for r in a["replicates"]]
    assert lifts[0] == 0 and lifts[0] < lifts[1] < lifts[2] and a["positive"] == 2 and a["negative"] == 0
    assert a["lift"]["sd"] == pytest.approx(np.std(lifts, ddof=1))
    shares = s["variance_share"]
    assert shares["actr"]["variance"] == pytest.approx(0, abs=1e-12) and shares["cpm"]["share"] == pytest.approx(1)
    s["training"] = replicates.training_settings(Settings())
    md = replicates.write_report(s, tmp_path, title="T").read_text()
    assert "The paper (Table 2, its industrial log): E-CDCTR 0.6652, Target-only 0.6564, lift +0.0088" in md
    assert "`early stopping` off (every epoch trained)" in md and "`cpm` lr 0.0005, batch 1024, 3 epoch(s)" in md
    import re

    assert re.search(r"^\| cpm +\| [0-9.e+-]+ +\| 100% +\|$", md, re.M), md
    assert (tmp_path / "replicates.png").stat().st_size > 10_000
    assert json.loads((tmp_path / "replicates.json").read_text())["vary"]["all"]["lift"]["n"] == 3


def test_the_paper_figure_is_the_one_the_design_records():
    from pathlib import Path

    design = Path(__file__).resolve().parents[3] / "shared" / "design" / "paper_results.json"
    if not design.exists():
        pytest.skip(f"{design} is not in this checkout")
    t2 = json.loads(design.read_text())["table2_overall"]
    assert {k: t2[k] for k in replicates.PAPER_TABLE2} == replicates.PAPER_TABLE2


def _noisy(rng, shifts, noise=1.0, users=300, per_user=20):
    """Replicates on one holdout: E-CDCTR = Target-only's scores + ``shift`` x label + fresh noise.
    The noise reorders each user's impressions differently in every replicate (the holdout
    part); the shift moves every user's AUC the same way (the seed's effect on the transfer)."""
    labels = rng.integers(0, 2, users * per_user)
    ids = np.repeat(np.arange(users), per_user)
    base = rng.normal(size=labels.size) + 0.8 * labels
    return [{"config": {"tpm": i, "cpm": i, "actr": i, "target_only": 0}, "days": [
        {"day": "2017-12-05", "labels": labels, "users": ids, "target_only": base,
         "ecdctr": base + shift * labels + rng.normal(scale=noise, size=labels.size),
         "training": {"target_only": {}, "ecdctr": {}}}]} for i, shift in enumerate(shifts)]


def test_the_holdout_explains_the_spread_of_replicates_that_differ_only_by_noise():
    rng = np.random.default_rng(7)
    same = replicates.holdout_variance(_noisy(rng, [0.0] * 8), n_boot=400)
    assert same["groups"] == 300 and same["observed_variance"] > 0
    assert 0.3 < same["holdout_share"] < 3.0, same  # the spread is what the users' sampling gives
    apart = replicates.holdout_variance(_noisy(rng, [0.0, 0.6, 1.2, 1.8]), n_boot=400)
    assert apart["holdout_share"] < 0.1 and apart["seed_variance"] > 0.9 * apart["observed_variance"], apart
    assert replicates.holdout_variance(_noisy(rng, [0.0]), n_boot=10) is None
    other = _noisy(rng, [0.0, 0.0])
    other[1]["days"][0]["labels"] = 1 - other[1]["days"][0]["labels"]  # scored on other rows
    other[1]["days"][0]["users"] = other[1]["days"][0]["users"][::-1] // 2
    with pytest.raises(EcdctrError, match="different"):
        replicates.holdout_variance(other, n_boot=10)


def test_the_report_is_recomputed_from_the_saved_scores(tmp_path, capsys):
    from ecdctr_pipeline.app.main import main

    result = _result(np.random.default_rng(1), {"all": [0.0, 0.2, 0.5], "cpm": [0.1, 0.4, 0.1]})
    result.update(seconds=12.0, weeks={}, models_trained=6, training={"cpm": "lr 0.0005"})
    path = replicates.save_scores(result, tmp_path / "run" / replicates.SCORES)
    assert [p.name for p in path.parent.iterdir()] == [replicates.SCORES]  # no partial file left
    first = replicates.summarize(result, n_boot=50)
    again = replicates.summarize(replicates.load_scores(path), n_boot=50)
    assert [r["lift"] for r in again["vary"]["all"]["replicates"]] == [r["lift"] for r in first["vary"]["all"]["replicates"]]
    assert again["vary"]["cpm"]["holdout"] == first["vary"]["cpm"]["holdout"]
    assert main(["replicate", "--from-scores", str(path), "--out", str(tmp_path / "re"), "--json"]) == 0
    md = (tmp_path / "re" / "replicates.md").read_text()
    assert "How much of it the holdout's size explains" in md and "`cpm` lr 0.0005" in md
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    capsys.readouterr()
    assert main(["replicate", "--from-scores", str(tmp_path / "bad.npz"), "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("ecdctr: error: replicate --from-scores") and "\n" not in err
    assert not (tmp_path / "x").exists()
    assert main(["replicate", "--out", str(tmp_path / "y")]) == 2
    assert "--monday is required" in capsys.readouterr().err
