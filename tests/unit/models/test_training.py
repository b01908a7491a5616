"""TPM snapshots, CPM refusals, CPM → A-CTR transfer, A-CTR publication and gate."""

import datetime as dt
import json

import keras
import numpy as np
import pytest

from ecdctr_pipeline import tiers
from ecdctr_pipeline.core import paths
from ecdctr_pipeline.core.errors import OverlapError
from ecdctr_pipeline.data import artifacts, embedding_sets
from ecdctr_pipeline.data.store import open_store
from ecdctr_pipeline.modeling import training
from ecdctr_pipeline.modeling.models import build_complete_model
from ecdctr_pipeline.modeling.transfer import POLICIES, TransferError, variable_groups, warm_start
from ecdctr_pipeline.tiers import baselines
from ecdctr_pipeline.tiers import tpm as tpm_tier


def train(tier, settings, when, **kw):
    return tiers.train(tier, settings, open_store(settings.store), when, **kw)


def test_tpm_snapshots_equal_month_end_tables_and_differ(pipeline_settings, monkeypatch):
    captured = {}
    real_fit = tpm_tier.fit

    def spy(model, arrays, layout, **kw):  # record the id tables at each month end
        out = real_fit(model, arrays, layout, **kw)
        month = kw["label"].rsplit(" ", 1)[-1]
        captured[month] = {s: model.get_layer(f"tpm_{s}_embedding").embeddings.numpy().copy() for s in ("user", "item")}
        captured[month]["vocab"] = {
            "user": model.get_layer("tpm_user_lookup").keys.numpy(), "item": model.get_layer("tpm_item_lookup").keys.numpy()}
        return out

    monkeypatch.setattr(tpm_tier, "fit", spy)
    r = train("tpm", pipeline_settings, "2026-10")
    assert r.extra["months"] == ["2026-07", "2026-08", "2026-09"]
    store = open_store(pipeline_settings.store)
    m = artifacts.read_manifest(store, paths.tpm_set("2026-10"))
    assert m.params["dim"] == 16 and len(m.files) == 6
    assert list(captured) == ["2026-04", "2026-05", "2026-06", "2026-07", "2026-08", "2026-09"]
    prev = None
    for month in m.months:
        for side in ("user", "item"):
            name = embedding_sets.table_name(side, month)
            ids, vecs = embedding_sets.read_table(artifacts.load_bytes(store, paths.tpm_set("2026-10"), name), name)
            assert m.row_counts[name.removesuffix(".parquet")] == len(ids)
            vocab = captured[month]["vocab"][side]
            rows = np.searchsorted(vocab, ids) + 1
            np.testing.assert_array_equal(vecs, captured[month][side][rows])  # == the table at month end
            if side == "user":
                if prev is not None:
                    common, a, b = np.intersect1d(prev[0], ids, return_indices=True)
                    assert len(common) > 10 and not np.allclose(prev[1][a], vecs[b])  # months differ
                prev = (ids, vecs)
    # idempotent: a second run leaves the set untouched
    again = train("tpm", pipeline_settings, "2026-10")
    assert again.skipped and artifacts.read_manifest(store, paths.tpm_set("2026-10")).attempt == m.attempt


def test_cpm_refuses_missing_set(pipeline_settings):
    with pytest.raises(embedding_sets.EmbeddingSetMissing, match=r"embedding set 2026-10 \(months 2026-07, 2026-08, 2026-09\)"):
        train("cpm", pipeline_settings, "2026-11-23")
    assert artifacts.find_manifest(open_store(pipeline_settings.store), paths.cpm_checkpoint("2026-11-23")) is None


def test_cpm_refuses_overlapping_set(cpm_ready):
    store = open_store(cpm_ready.store)
    store.delete_prefix(paths.cpm_checkpoint("2026-11-23"))
    prefix = paths.tpm_set("2026-10")
    m = artifacts.read_manifest(store, prefix)
    # a set whose manifest claims a month inside the CPM window must be refused, never trained on
    bad = m.model_copy(update={"months": ["2026-08", "2026-09", "2026-10"]})
    store.put_bytes(paths.manifest_key(prefix), bad.to_json())
    with pytest.raises(OverlapError, match="months 2026-10 are not before the first training month 2026-10"):
        train("cpm", cpm_ready, "2026-11-23")
    assert artifacts.find_manifest(store, paths.cpm_checkpoint("2026-11-23")) is None


@pytest.fixture
def cpm_ready(cpm_trained_store, tmp_path):
    """A private copy of the trained store (tests publish A-CTR models into it)."""
    import shutil

    from tests.conftest import tiny_settings

    shutil.copytree(cpm_trained_store, tmp_path / "store")
    return tiny_settings(f"file://{tmp_path / 'store'}")


def test_transfer_policies(cpm_trained_store):
    from tests.conftest import tiny_settings

    s = tiny_settings(f"file://{cpm_trained_store}")  # read only
    store = open_store(s.store)
    cpm = training.load_model(store, paths.cpm_checkpoint("2026-11-23"))
    hist = embedding_sets.load(store, artifacts.read_manifest(store, paths.tpm_set("2026-10")))
    keras.utils.set_random_seed(123)
    fresh = build_complete_model(s.cpm, s.features, hist, name="actr")
    init = {v.path: v.numpy() for v in fresh.weights}
    src = {v.path: v.numpy() for v in cpm.weights}
    groups = variable_groups(fresh)
    bn = [p for p, g in groups.items() if g == "batchnorm"]
    assert len(bn) == 8  # gamma, beta, moving mean, moving variance of both BatchNorms
    assert any(not np.allclose(src[p], init[p]) for p in bn)  # the CPM's BN had moved away
    assert set(groups.values()) == {"embedding", "mlp", "frozen", "batchnorm"}
    # the paper's Table 6 split: DIN, the cross network and the historical attention are "MLP"
    for layer in ("din_attention", "cross", "hist_user"):
        trained = [p for p in groups if p.startswith(f"{layer}/") and groups[p] != "frozen"]
        assert trained and {groups[p] for p in trained} == {"mlp"}, layer
    for policy, keep in POLICIES.items():
        keras.utils.set_random_seed(123)
        target = build_complete_model(s.cpm, s.features, hist, name="actr")
        report = warm_start(target, cpm, policy)
        assert report["policy"] == policy
        assert sorted(report["restored"] + report["reinitialized"]) == sorted(groups)
        for v in target.weights:
            if groups[v.path] in keep:
                np.testing.assert_array_equal(v.numpy(), src[v.path], err_msg=f"{policy} {v.path}")
            else:
                np.testing.assert_array_equal(v.numpy(), init[v.path], err_msg=f"{policy} {v.path}")
                assert v.path in report["reinitialized"]
        restored = {groups[p] for p in report["restored"]}
        assert restored == set(keep), policy  # the name says what is restored
    assert POLICIES["all_but_bn"] == POLICIES["all"] - {"batchnorm"}
    assert POLICIES["mlp_without_bn"] == {"mlp", "frozen"} and POLICIES["none"] == {"frozen"}
    # Embeddings ∪ MLP (w/o BN) is E-CDCTR (Table 6)
    assert POLICIES["embeddings"] | POLICIES["mlp_without_bn"] == POLICIES["all_but_bn"] == POLICIES["embeddings_and_mlp"]


def test_transfer_rejects_mismatch(cpm_ready):
    store = open_store(cpm_ready.store)
    cpm = training.load_model(store, paths.cpm_checkpoint("2026-11-23"))
    target_only = build_complete_model(cpm_ready.cpm, cpm_ready.features, None)
    other = cpm_ready.model_copy(update={"cpm": cpm_ready.cpm.model_copy(update={"hidden_units": [8, 4]})})
    hist = embedding_sets.load(store, artifacts.read_manifest(store, paths.tpm_set("2026-10")))
    with pytest.raises(TransferError, match="shape"):
        warm_start(build_complete_model(other.cpm, other.features, hist), cpm, "all_but_bn")
    with pytest.raises(TransferError, match="unknown transfer policy"):
        warm_start(target_only, cpm, "most")


def test_actr_publishes_lineage_and_warm_start_report(cpm_ready):
    import dataclasses

    from ecdctr_pipeline.modeling.streaming import make_dataset
    from ecdctr_pipeline.tiers import actr

    # with early stopping on the last 3 days of the training window (patience 0, up to 3 epochs)
    cpm_ready.training.validation_days, cpm_ready.training.early_stopping_patience = 3, 0
    cpm_ready.actr.epochs = 3
    r = train("actr", cpm_ready, "2026-11-24")
    store = open_store(cpm_ready.store)
    m = artifacts.read_manifest(store, paths.actr_model("2026-11-24"))
    args = dataclasses.replace(actr.resolve(cpm_ready, store, actr.plan(cpm_ready, "2026-11-24")), artifact="")
    fit_src, val_src = training.training_sources(args)
    assert fit_src.window.end == val_src.window.start == dt.date(2026, 11, 20)
    assert val_src.window.end == args.plan.train_window.end == args.plan.holdout_window.start
    assert m.row_counts == {"train": fit_src.num_rows, "validation": val_src.num_rows,
                            "holdout": r.metrics["impressions"]}
    assert 1 <= m.metrics["best_epoch"] <= m.metrics["epochs_run"] <= 3
    with pytest.raises(training.TrainingError, match="validation_days=27 leaves no training day"):
        training.training_sources(dataclasses.replace(
            args, training=cpm_ready.training.model_copy(update={"validation_days": 27})))
    assert m.inputs.cpm_checkpoint == "2026-11-23" and m.inputs.embedding_set == "2026-10"
    assert m.inputs.embedding_months == ["2026-07", "2026-08", "2026-09"]
    assert m.inputs.delta_tables == {"features/complete/ad": 1}  # v0 the extraction, v1 its feature-schema record
    assert m.feature_schema == cpm_ready.features.feature_schema().identity.to_dict()
    assert m.feature_schema["name"] == "default" and len(m.feature_schema["fingerprint"]) == 64
    ws = m.extra["warm_start"]
    assert ws["policy"] == "all_but_bn" and ws["reinitialized_groups"] == ["batchnorm"]
    assert len(ws["reinitialized"]) == 8 and all("/bn_" in p for p in ws["reinitialized"])
    assert m.blessed and m.blessing.baseline is None  # first model: nothing served
    assert r.extra["blessing"]["candidate_gauc"] == pytest.approx(m.metrics["gauc"])
    assert r.metrics["gauc_coverage"] > 0 and {f.name for f in m.files} == {"model.keras", "eval.json"}
    # the model reloads and scores
    model = training.load_model(store, paths.actr_model("2026-11-24"))
    assert model.name == "actr"
    # the published weights are the best epoch's with their BatchNorm statistics settled on the
    # training rows: their validation loss is the one recorded after settling, and settling the
    # few steps' moving averages lowered it
    from ecdctr_pipeline.modeling.models import compile_model

    val = make_dataset(val_src, args.data.layout, cpm_ready.actr.batch_size, shuffle=False)
    loss = compile_model(model, 1e-3).evaluate(val, verbose=0, return_dict=True)["loss"]
    assert loss == pytest.approx(m.metrics["settled_val_loss"], rel=1e-4)
    assert m.metrics["bn_gap"] > 0.5 and m.metrics["bn_rows"] == fit_src.num_rows
    assert m.metrics["settled_val_loss"] < m.metrics["best_val_loss"]
    assert len(m.metrics["loss_curve"]) == len(m.metrics["val_loss_curve"]) == m.metrics["epochs_run"]
    assert min(m.metrics["val_loss_curve"]) == pytest.approx(m.metrics["best_val_loss"], rel=1e-5)
    assert m.extra["cpm_choice"] == {"checkpoint": "2026-11-23", "fallback": False,
                                     "chosen_by": "resolver (no --cpm)"}
    # the A-CTR DAG's evaluate step: the published model and Target-only on the same holdout
    report = baselines.evaluate_day(cpm_ready, store, "2026-11-24")
    assert report["target_only"]["gauc_coverage"] > 0 and report["cpm_checkpoint"] == "2026-11-23"
    assert report["gauc_lift"] == pytest.approx(report["actr"]["gauc"] - report["target_only"]["gauc"])
    assert report["actr"]["gauc"] == m.metrics["gauc"]  # the gate's figure, not a second scoring
    assert report["table_version"] == m.inputs.delta_tables  # Target-only on the rows A-CTR was trained on
    assert json.loads(store.get_bytes(paths.evaluation_report("2026-11-24"))) == report


def test_a_holdout_that_cannot_judge_the_model_publishes_it_not_evaluable(cpm_ready, webhook_receiver):
    """A sparse holdout never crashes the daily run: too little GAUC coverage (a settings floor)
    or none at all (every user of the day has one class) gives a not-evaluable verdict; the run
    publishes the model unblessed, alerts naming the day and the coverage, and export and
    evaluation say so."""
    import dataclasses

    import pyarrow as pa
    import pyarrow.compute as pc

    from ecdctr_pipeline.data import delta
    from ecdctr_pipeline.serving.export import ExportRefused, export_version
    from ecdctr_pipeline.tiers import actr

    base, received = webhook_receiver
    cpm_ready.alerts.notifiers, cpm_ready.alerts.webhook_url = ["webhook"], f"{base}/hook"
    store = open_store(cpm_ready.store)
    day, holdout = "2026-11-24", "2026-11-23"

    # the floor: the day's holdout scored by a model (the CPM, which takes the same inputs) twice
    args = actr.resolve(cpm_ready, store, actr.plan(cpm_ready, day))
    scored = training.TrainResult(model=training.load_model(store, args.base_prefix, args.base_model))
    metrics, verdict = actr.assess(args, scored)
    assert verdict.not_evaluable is None and verdict.blessed and 0 < metrics["gauc_coverage"] < 1
    strict = dataclasses.replace(args, params={**args.params, "min_gauc_coverage": 1.0})
    metrics, verdict = actr.assess(strict, scored)
    assert not verdict.blessed and verdict.baseline is None and metrics["gauc"] is not None
    assert verdict.not_evaluable == (f"GAUC coverage {metrics['gauc_coverage']:.3f} of holdout [{holdout}, {day}) "
                                     "is below actr.min_gauc_coverage 1.0")
    # the absolute floor actr.min_gauc: rejected below it whatever is served (nothing is here), blessed at it
    g = metrics["gauc"]
    for floor, blessed in ((g + 0.01, False), (g, True)):
        _, verdict = actr.assess(dataclasses.replace(args, params={**args.params, "min_gauc": floor}), scored)
        assert (verdict.blessed, verdict.min_gauc, verdict.baseline) == (blessed, floor, None)
        assert ("BELOW floor actr.min_gauc" in verdict.describe()) is not blessed

    # every user of the holdout day has one class (clicks by user parity): no GAUC at all
    t, _ = delta.read(store, "features/complete/ad", partitions=[holdout])
    parity = pc.cast(pc.equal(pc.bit_wise_and(t["user_id"], 1), 1), pa.int8())
    delta.write(store, "features/complete/ad", t.set_column(t.schema.get_field_index("click"), "click", parity))
    r = train("actr", cpm_ready, day)
    m = artifacts.read_manifest(store, paths.actr_model(day))
    assert not m.blessed and m.metrics["gauc"] is None and m.metrics["gauc_coverage"] == 0.0
    assert 0 <= m.metrics["auc"] <= 1 and m.metrics["impressions"] == t.num_rows  # both classes overall
    assert m.blessing.not_evaluable.startswith(f"holdout [{holdout}, {day}): GAUC coverage is zero: none of ")
    assert r.extra["blessing"]["not_evaluable"] == m.blessing.not_evaluable
    assert [(a["kind"], a["logical_date"], a["details"][0]["gauc_coverage"]) for a in received] == [
        ("not_evaluable", day, 0.0)]
    assert "published unblessed, the served model stays" in received[0]["summary"]
    # the day's evaluation and export say so instead of failing on a missing GAUC
    report = baselines.evaluate_day(cpm_ready, store, day)
    assert report["not_evaluable"] == m.blessing.not_evaluable and report["blessed"] is False
    with pytest.raises(ExportRefused, match=r"A-CTR model 2026-11-24 was rejected by its gate \(NOT EVALUABLE: holdout"):
        export_version(cpm_ready, store, day)
    # a model the gate rejected (here: below the floor) alerts model_rejected, naming the floor
    from ecdctr_pipeline import tiers

    rejected = artifacts.Blessing(blessed=False, candidate_gauc=0.41, tolerance=0.002, min_gauc=0.5,
                                  holdout={"start": holdout, "end": day})
    tiers._alert_unblessed(cpm_ready, store, "actr", day, rejected, {"gauc": 0.41, "gauc_coverage": 0.3})
    assert received[-1]["kind"] == "model_rejected" and received[-1]["logical_date"] == day
    assert "REJECTED: GAUC 0.41 vs no served model (tolerance 0.002; BELOW floor actr.min_gauc 0.5)" in \
        received[-1]["summary"]
    assert received[-1]["details"][0]["min_gauc"] == 0.5 and received[-1]["details"][0]["served_model"] is None


def test_the_blessing_can_require_beating_target_only(cpm_ready):
    """actr.bless_requires_target_only: the gate trains Target-only on the run's window, scores it
    on the same holdout rows, records it in the blessing and rejects a candidate that loses to it
    by more than actr.target_only_margin, even with nothing served."""
    import dataclasses

    from ecdctr_pipeline.evaluation.holdout import holdout_source
    from ecdctr_pipeline.tiers import actr

    store = open_store(cpm_ready.store)
    day = "2026-11-24"
    cpm_ready.actr.bless_requires_target_only, cpm_ready.actr.target_only_margin = True, 0.0
    args = actr.resolve(cpm_ready, store, actr.plan(cpm_ready, day))
    assert args.params["bless_requires_target_only"] and args.params["target_only_margin"] == 0.0
    to_args = actr.target_only_args(args)
    assert (to_args.tier, to_args.artifact, to_args.embedding_set, to_args.base_model) == ("target_only", "", None, None)
    assert to_args.data == args.data and to_args.hparams == args.hparams
    assert "bless_requires_target_only" not in to_args.params
    scored = training.TrainResult(model=training.load_model(store, args.base_prefix, args.base_model))
    _, verdict = actr.assess(args, scored)
    assert verdict.baseline is None and verdict.target_only.model == "target-only"
    to_gauc = verdict.target_only.gauc
    assert 0 < to_gauc < 1 and verdict.target_only_margin == 0.0
    assert verdict.blessed == (verdict.candidate_gauc >= to_gauc)
    assert f"vs Target-only GAUC {to_gauc} (margin 0.0)" in verdict.describe()
    # a candidate 0.05 below Target-only: rejected at margin 0, blessed at margin 0.1
    worse = verdict.model_copy(update={"candidate_gauc": to_gauc - 0.05, "blessed": True, "target_only": None})
    holdout = holdout_source(args)
    rejected = actr.against_target_only(args, worse, holdout)
    assert not rejected.blessed and rejected.target_only.gauc == pytest.approx(to_gauc, abs=2e-3)
    assert rejected.describe().startswith("REJECTED")
    lenient = dataclasses.replace(args, params={**args.params, "target_only_margin": 0.1})
    assert actr.against_target_only(lenient, worse, holdout).blessed
    # off (the default): no Target-only training at the gate, nothing recorded
    cpm_ready.actr.bless_requires_target_only = False
    plain = actr.resolve(cpm_ready, store, actr.plan(cpm_ready, day))
    assert "bless_requires_target_only" not in plain.params
    assert actr.assess(plain, scored)[1].target_only is None


def test_transfer_harmful_alerts_when_a_ctr_loses_to_target_only_over_the_last_days(tmp_path, webhook_receiver):
    """The daily evaluation's guard of the central claim: the mean lift over the evaluation reports
    of the last actr.transfer_harm_days days, alerting once the mean is below -margin on at least
    half of those days."""
    from ecdctr_pipeline.core.settings import Settings

    base, received = webhook_receiver
    s = Settings.model_validate({"store": {"root": f"file://{tmp_path}/store"},
                                 "alerts": {"notifiers": ["webhook"], "webhook_url": f"{base}/hook"},
                                 "actr": {"transfer_harm_days": 7, "transfer_harm_margin": 0.01}})
    store = open_store(s.store)
    day = dt.date(2026, 11, 24)

    def report(d, lift):
        store.put_bytes(paths.evaluation_report(d), json.dumps({"day": d.isoformat(), "gauc_lift": lift}).encode())

    for i, lift in enumerate((-0.03, -0.02, -0.04)):  # 3 of 7 days compared: not enough to decide
        report(day - dt.timedelta(days=i), lift)
    g = baselines.transfer_guard(s, store, day)
    assert (g["compared"], g["needed"], g["harmful"]) == (3, 4, False) and g["mean_lift"] == pytest.approx(-0.03)
    report(day - dt.timedelta(days=8), -0.5)  # outside the window: not counted
    store.put_bytes(paths.evaluation_report(day - dt.timedelta(days=3)),  # not evaluable: no lift
                    json.dumps({"day": "x", "not_evaluable": "no GAUC"}).encode())
    assert baselines.transfer_guard(s, store, day)["compared"] == 3 and received == []
    report(day - dt.timedelta(days=6), -0.01)  # 4 of 7, mean -0.025 < -0.01
    g = baselines.transfer_guard(s, store, day)
    assert g["harmful"] and g["mean_lift"] == pytest.approx(-0.025) and g["alerts"] == {"webhook": "sent"}
    assert [(a["kind"], a["logical_date"]) for a in received] == [("transfer_harmful", "2026-11-24")]
    assert "mean GAUC lift -0.0250 over 4 of the last 7 days" in received[0]["summary"]
    assert sorted(x["day"] for x in received[0]["details"]) == ["2026-11-18", "2026-11-22", "2026-11-23", "2026-11-24"]
    report(day - dt.timedelta(days=6), 0.07)  # mean +0.005: the transfer helps again, no alert
    assert not baselines.transfer_guard(s, store, day)["harmful"] and len(received) == 1
    # the day being evaluated counts with its new lift, not its stored report's
    g = baselines.transfer_guard(s, store, day, current=-0.2)
    assert g["lifts"]["2026-11-24"] == -0.2 and g["mean_lift"] == pytest.approx(-0.0475) and len(received) == 2
    assert received[1]["subject"] == "ecdctr_actr_daily"


def test_a_diverged_tpm_is_never_published(pipeline_settings):
    """TPM refuses non-finite embedding tables or loss (a diverging learning rate): the run
    fails in one line and publishes nothing (the previous set, had there been one, stays)."""
    from ecdctr_pipeline.modeling.training import TrainingError

    pipeline_settings.tpm.learning_rate = 1e30  # Adam steps ~lr: the tables overflow float32
    with pytest.raises(TrainingError, match=r"train tpm 2026-10: month 2026-0\d diverged \(.*lower tpm.learning_rate"):
        train("tpm", pipeline_settings, "2026-10")
    assert artifacts.find_manifest(open_store(pipeline_settings.store), paths.tpm_set("2026-10")) is None


def test_actr_checks_the_cpm_manifest_against_the_embedding_set_it_loads(cpm_ready):
    """The non-overlap check and the A-CTR lineage use the months of the set actually loaded; a CPM
    manifest whose copied months disagree with that set is refused, naming both."""
    from ecdctr_pipeline.core.errors import CorruptArtifactError
    from ecdctr_pipeline.tiers import actr

    store = open_store(cpm_ready.store)
    prefix = paths.cpm_checkpoint("2026-11-23")
    m = artifacts.read_manifest(store, prefix)
    forged = m.model_copy(update={"inputs": m.inputs.model_copy(update={"embedding_months": ["2026-08", "2026-09",
                                                                                            "2026-10"]})})
    store.put_bytes(paths.manifest_key(prefix), forged.to_json())
    with pytest.raises(CorruptArtifactError, match="CPM 2026-11-23's manifest says embedding set 2026-10 has months "
                                                   "2026-08, 2026-09, 2026-10, the set's own manifest says 2026-07, "
                                                   "2026-08, 2026-09"):
        actr.resolve(cpm_ready, store, actr.plan(cpm_ready, "2026-11-24"))


def test_a_corrupt_manifest_is_reported_and_replaced_with_force(cpm_ready, capsys):
    """One unreadable manifest no longer blocks recovery: ``status`` lists it and exits 0; the
    trainer refuses it in one line without --force, and replaces it with --force."""
    import yaml

    from ecdctr_pipeline.app.main import main
    from ecdctr_pipeline.core.errors import CorruptArtifactError
    from ecdctr_pipeline.core.settings import settings_dict

    cfg = str(open_store(cpm_ready.store).local_path("config.yaml"))
    with open(cfg, "w") as f:
        yaml.safe_dump(settings_dict(cpm_ready, mask=False), f)
    store = open_store(cpm_ready.store)
    prefix = paths.tpm_set("2026-10")
    store.put_bytes(paths.manifest_key(prefix), b'{"kind": "tpm_embedding_set", "artifact_id": ')  # torn write
    assert main(["--config", cfg, "status", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [c["prefix"] for c in out["corrupt"]] == [prefix] and "invalid manifest" in out["corrupt"][0]["error"]
    assert {a["kind"] for a in out["artifacts"]} == {"cpm_checkpoint"}  # the readable ones are still listed
    with pytest.raises(CorruptArtifactError, match="invalid manifest .*; retrain with --force to replace it"):
        train("tpm", cpm_ready, "2026-10")
    r = train("tpm", cpm_ready, "2026-10", force=True)
    assert not r.skipped and artifacts.read_manifest(store, prefix).kind == "tpm_embedding_set"
