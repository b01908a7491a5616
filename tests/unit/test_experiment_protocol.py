"""``ecdctr experiments``' statistics over replicates (issue 31): per ordering a paired t test
over replicates (world x training seed), Holm across the table's orderings, non-inferiority for
">=", the A/A check "~", the minimum detectable effect; and the checks that keep a simulated
holdout's true probabilities on the right rows."""

from __future__ import annotations

import numpy as np
import pytest

from ecdctr_pipeline.app import experiments
from ecdctr_pipeline.core.errors import EcdctrError
from ecdctr_pipeline.evaluation.metrics import pooled_gauc
from ecdctr_pipeline.evaluation.protocol import mde


def _world_day(rng, shift: dict[str, float], users: int = 60, per_user: int = 20) -> dict:
    """One day of a replicate: true probabilities, drawn clicks, and each variant's scores = the
    true logit + its own noise + ``shift[v]`` x the true logit (a variant's planted skill)."""
    u = np.repeat(np.arange(users), per_user)
    logit = rng.normal(-2.0, 1.0, u.size)
    p = 1 / (1 + np.exp(-logit))
    clicks = (rng.random(u.size) < p).astype(np.int64)
    scores = {v: 1 / (1 + np.exp(-(logit * (1 + k) + 1.5 * rng.normal(size=u.size)))) for v, k in shift.items()}
    return {"day": "2026-11-23", "labels": clicks, "users": u, "scores": scores,
            "training": {v: {"rows": 1000, "epochs_run": 2} for v in shift},
            "probe": {"labels": clicks, "users": u, "probs": p, "scores": scores}}


TABLE = experiments.Table("t", "a test table", ("ref", "better", "same", "worse"), "ref",
                          (("better", ">", "ref"), ("same", "~", "ref"), ("worse", ">", "ref"), ("same", ">=", "ref")))


def _runs(n: int, seed: int = 0) -> dict[str, dict]:
    rng = np.random.default_rng(seed)
    return {f"w{w}-s0": {"world": w, "seed": 0,
                         "days": [_world_day(rng, {"ref": 0.0, "better": 0.6, "same": 0.0, "worse": -0.6})]}
            for w in range(n)}


def test_orderings_are_tested_over_replicates_with_holm_and_the_mde():
    runs = _runs(8)
    s = experiments.summarize(TABLE, runs, margin=0.05)
    assert s["metric"] == "expected" and [r["key"] for r in s["replicates"]] == sorted(runs)
    by = {(o["a"], o["op"]): o for o in s["orderings"]}
    assert by["better", ">"]["verdict"] == "holds" and by["worse", ">"]["verdict"] == "reversed"
    assert by["same", "~"]["verdict"] == "no difference detected"
    assert by["same", ">="]["verdict"] == "holds"  # non-inferior within a 0.05 margin
    # each lift is the replicates' paired difference of the pooled expected GAUC
    ref = [pooled_gauc([(d["probe"]["probs"], d["users"], d["probe"]["scores"]["ref"])], expected=True).gauc
           for r in runs.values() for d in r["days"]]
    better = [pooled_gauc([(d["probe"]["probs"], d["users"], d["probe"]["scores"]["better"])], expected=True).gauc
              for r in runs.values() for d in r["days"]]
    o = by["better", ">"]
    assert o["lifts"] == pytest.approx(np.subtract(better, ref).tolist()) and o["replicates"] == 8
    assert o["ci_low"] < o["lift"] < o["ci_high"] and o["mde"] == pytest.approx(mde(o["sd"], 8))
    # Holm: the adjusted p-values are at least the raw ones and keep their order
    raw = {k: by[k]["test"]["p"] for k in by}
    assert all(by[k]["p_holm"] >= raw[k] for k in by)
    assert s["mde"] == pytest.approx(max(x["mde"] for x in s["orderings"]))
    row = {r["variant"]: r for r in s["rows"]}
    assert row["better"]["samples_seen"] == 2000 and row["ref"]["lift_vs_reference"] is None
    assert row["better"]["expected_mean"] == pytest.approx(np.mean(better))
    assert s["expected_ceiling"] > row["better"]["expected_mean"]  # the true probabilities rank best


def test_a_margin_too_small_leaves_non_inferiority_unresolved_and_one_replicate_resolves_nothing():
    s = experiments.summarize(TABLE, _runs(3, seed=1), margin=0.0)
    by = {(o["a"], o["op"]): o["verdict"] for o in s["orderings"]}
    assert by["same", ">="] == "unresolved"
    one = experiments.summarize(TABLE, _runs(1))
    assert {o["verdict"] for o in one["orderings"]} == {"unresolved (1 replicate)"} and one["mde"] is None
    with pytest.raises(EcdctrError, match="no replicates"):
        experiments.summarize(TABLE, {})


def test_true_probabilities_must_sit_on_the_simulators_rows():
    drawn = experiments.Probe(None, np.array([0.1, 0.9, 0.2]), np.array([0, 1, 0]))
    experiments._check_drawn(np.array([0, 1, 0]), drawn, "the holdout")
    with pytest.raises(EcdctrError, match="the holdout has 3 rows whose labels are not the 3 clicks"):
        experiments._check_drawn(np.array([1, 0, 0]), drawn, "the holdout")
    with pytest.raises(EcdctrError, match="has 2 rows"):
        experiments._check_drawn(np.array([0, 1]), drawn, "the holdout")
    # the planted variant moves scores by a fraction of the true logit, in logit space
    base, p = np.array([0.5, 0.5]), np.array([0.2, 0.8])
    assert experiments._planted(base, p, 1.0) == pytest.approx(p)
    assert experiments._planted(base, p, 0.0) == pytest.approx(base)


def test_derived_variants_need_a_simulated_world():
    from ecdctr_pipeline.core.settings import Settings

    with pytest.raises(EcdctrError, match="planted needs a simulated world's true click probabilities"):
        experiments.run_days(Settings(), None, experiments.dt.date(2026, 11, 23), 1, ["target_only", "planted"])
    with pytest.raises(EcdctrError, match="planted is derived from target_only; run both"):
        experiments.run_days(Settings(), None, experiments.dt.date(2026, 11, 23), 1, ["planted"])


def test_the_papers_figures_match_the_design_folder_and_name_registered_variants():
    import json
    from pathlib import Path

    from ecdctr_pipeline.evaluation import paper
    from ecdctr_pipeline.tiers import variants

    for key, (name, rows) in paper.PAPER.items():
        assert key in experiments.TABLES and set(rows) <= set(experiments.TABLES[key].variants), key
        assert set(rows) <= set(variants.REGISTRY) and set(rows) <= set(paper.JSON_NAMES[name][1])
    design = Path(__file__).resolve().parents[3] / "shared" / "design" / "paper_results.json"
    if not design.exists():
        pytest.skip(f"the design folder is not beside the repository ({design})")
    figures = json.loads(design.read_text())
    for key, (name, rows) in paper.PAPER.items():
        section, names = paper.JSON_NAMES[name]
        assert {v: figures[section][names[v]] for v in rows} == rows, key
    assert paper.lift("3", "ecdctr", "target_only") == pytest.approx(0.0088)
    assert paper.figure("aa", "planted") is None and paper.lift("2", "ecdctr", "nope") is None
    # every ordering a table tests is one the paper's own figures show, and every pair of the
    # paper's Table 3, 4 and 6 rows that the tables hold is tested one way or the other
    for key, t in experiments.TABLES.items():
        for a, op, b in t.orderings:
            lift = paper.lift(key, a, b)
            assert lift is None or lift > 0, (key, a, op, b, lift)
        if key in ("3", "4", "6"):
            rows = paper.PAPER[key][1]
            pairs = {frozenset((a, b)) for a, _, b in t.orderings}
            untested = [(a, b) for a in rows for b in rows if a < b and frozenset((a, b)) not in pairs]
            assert not untested, (key, untested)


def test_tpm_taste_r2_is_high_for_vectors_that_carry_the_taste_and_low_for_noise():
    from ecdctr_pipeline.data.embedding_sets import HistoricalTables

    class W:
        user_long = np.random.default_rng(0).normal(size=(500, 4))

    ids = np.arange(500)
    rng = np.random.default_rng(1)
    mix = rng.normal(size=(4, 8))
    good = W.user_long @ mix + 0.1 * rng.normal(size=(500, 8))  # a linear image of the taste
    noise = rng.normal(size=(500, 8))
    vec = np.stack([good, noise], axis=1).astype(np.float32)
    vec[:100, 1] = 0  # 100 users without a vector in the second month: left out of its fit
    t = HistoricalTables("s", ("2026-08", "2026-09"), ids, vec, np.arange(3), np.zeros((3, 2, 8), np.float32))
    r2 = experiments.tpm_taste_r2(W, t)["per_month"]
    assert r2["2026-08"] > 0.9 and r2["2026-09"] < 0.05


def test_replicates_never_share_a_training_seed():
    seeds = {experiments.training_seed(w, s) for w in range(20) for s in range(3)}
    assert len(seeds) == 60 and all(0 <= x < 2**31 - 1 for x in seeds)
    assert experiments.training_seed(3, 1) == experiments.training_seed(3, 1)  # reproducible
