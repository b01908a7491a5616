"""Baselines trained on the tiers' windows: Target-only (the same network, random init, no TPM
inputs, trained on the same ad window with the same budget), the day's comparison report of the
published A-CTR model against it (``ecdctr evaluate actr``), and the efficiency claim's
alternative: the complete model re-pretrained on months of natural data, then fine-tuned on the
A-CTR window like the CPM is."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import time

from ecdctr_pipeline.core import paths
from ecdctr_pipeline.core.errors import EcdctrError
from ecdctr_pipeline.core.settings import Settings
from ecdctr_pipeline.data import artifacts
from ecdctr_pipeline.data.store import ArtifactStore
from ecdctr_pipeline.tiers import actr, cpm


def _holdout_scores(args, model, info: dict, *, layout=None, wrap=lambda source: source):
    """``(labels, scores, users, info)`` of ``model`` on the run's held-out window (streamed);
    inside :func:`~ecdctr_pipeline.evaluation.holdout.probing`, ``info["probe"]`` is the same
    model's ``(labels, scores, users)`` on the probe holdout. ``wrap``: how the model reads a
    source (Sample merging's domain tag)."""
    from ecdctr_pipeline.evaluation.holdout import holdout_source, probe_source
    from ecdctr_pipeline.modeling.streaming import score_stream

    layout = layout or args.data.layout
    probe = probe_source(args)
    if probe is not None:
        info = {**info, "probe": score_stream(model, wrap(probe), layout)}
    return (*score_stream(model, wrap(holdout_source(args)), layout), info)


def target_only_scores(settings: Settings, store: ArtifactStore, day: str | dt.date, *, args=None, historical=None,
                       source_sequence: bool = False):
    """A Target-only model of A-CTR ``day`` scored on the day's holdout (``args``: its resolved
    :class:`~ecdctr_pipeline.modeling.training.TrainArgs`, when the caller has them):
    ``(labels, scores, users, what training recorded)``. ``historical``: TPM tables plugged into
    it (KEEP-style: pre-trained embeddings as frozen inputs, every other weight random).
    ``source_sequence``: MiNet, the same training with the ad rows' natural clicks as a second
    sequence (the ad features must be extracted with ``features.ad_history: split``)."""
    from ecdctr_pipeline.modeling.training import quiet_tf

    quiet_tf()
    args = args or actr.resolve(settings, store, actr.plan(settings, day), target_only=True)
    if historical is not None:
        args = dataclasses.replace(args, tier="plugged", historical=historical,
                                   who=f"target-only with TPM tables {historical.set_id} {args.logical_date}")
    if source_sequence:
        from ecdctr_pipeline.core.schema import SRC_SEQ_ITEMS
        from ecdctr_pipeline.data import delta

        if SRC_SEQ_ITEMS not in (delta.column_names(store, args.data.table) or []):
            raise EcdctrError(f"minet {args.logical_date}: {args.data.table} has no {SRC_SEQ_ITEMS} column: extract "
                              "the ad features with features.ad_history: split")
        layout = dataclasses.replace(args.data.layout, source_sequence=True)
        args = dataclasses.replace(args, tier="minet", who=f"minet {args.logical_date}",
                                   data=dataclasses.replace(args.data, layout=layout))
    result = actr.run_training(args)
    return _holdout_scores(args, result.model, {"rows": result.row_counts["train"], **result.train_metrics})


def target_only(settings: Settings, store: ArtifactStore, day: str | dt.date, *, args=None) -> dict:
    """Holdout metrics of a Target-only model trained on A-CTR ``day``'s window."""
    from ecdctr_pipeline.evaluation.metrics import evaluate

    labels, scores, users, _ = target_only_scores(settings, store, day, args=args)
    return evaluate(labels, scores, users)


def evaluate_day(settings: Settings, store: ArtifactStore, day: str | dt.date, *, force: bool = False) -> dict:
    """Holdout metrics of the published A-CTR model of ``day`` and of a Target-only model. The
    day's report names the model attempt it evaluated: a report of the same attempt is returned
    as it is (``skipped``), unless ``force``; a retrained model is evaluated again."""
    from ecdctr_pipeline.evaluation.holdout import evaluate_model
    from ecdctr_pipeline.modeling.training import load_model

    p = actr.plan(settings, day)
    prefix = paths.actr_model(p.day)
    manifest = artifacts.read_manifest(store, prefix)
    key = paths.evaluation_report(p.day)
    if not force and store.exists(key):
        old = json.loads(store.get_bytes(key))
        if old.get("actr_attempt") == manifest.attempt:
            return {**old, "skipped": True}
    if manifest.blessing is not None and manifest.blessing.not_evaluable:  # the holdout cannot compare models
        report = {"day": p.day.isoformat(), "holdout": p.holdout_window.to_dict(),
                  "not_evaluable": manifest.blessing.not_evaluable, "blessed": False, "actr_attempt": manifest.attempt,
                  "cpm_checkpoint": manifest.inputs.cpm_checkpoint, "embedding_set": manifest.inputs.embedding_set}
        store.put_bytes(paths.evaluation_report(p.day), json.dumps(report, indent=2).encode())
        return report
    args = actr.resolve(settings, store, p, target_only=True)  # the same window rules
    recorded = manifest.inputs.delta_tables.get(args.data.table)
    if recorded is not None and recorded != args.data.version:  # the rows the model was trained and judged on
        args = dataclasses.replace(args, data=dataclasses.replace(args.data, version=recorded))
    t = target_only(settings, store, p.day, args=args)
    # the A-CTR model's holdout metrics are its manifest's (the gate scored those rows); scored again
    # only for a manifest from before they were recorded
    a = {k: manifest.metrics[k] for k in t if k in manifest.metrics}
    if set(a) != set(t):
        a = evaluate_model(args, load_model(store, prefix, manifest))[0]
    report = {"day": p.day.isoformat(), "holdout": p.holdout_window.to_dict(), "actr": a, "target_only": t,
              "gauc_lift": a["gauc"] - t["gauc"], "blessed": manifest.blessed, "actr_attempt": manifest.attempt,
              "table_version": {args.data.table: args.data.version},
              "cpm_checkpoint": manifest.inputs.cpm_checkpoint, "embedding_set": manifest.inputs.embedding_set}
    report["transfer_guard"] = transfer_guard(settings, store, p.day, current=report["gauc_lift"])
    store.put_bytes(paths.evaluation_report(p.day), json.dumps(report, indent=2).encode())
    return report


def transfer_guard(settings: Settings, store: ArtifactStore, day: dt.date, *, current: float | None = None,
                   alert: bool = True) -> dict:
    """The central claim, watched in production: the mean GAUC lift of A-CTR over Target-only
    over the evaluation reports of the last ``actr.transfer_harm_days`` days (``day`` included;
    ``current``: that day's lift, when its report is being written). Harmful when at least half
    of those days were compared and the mean lift is below ``-actr.transfer_harm_margin``; then
    one ``transfer_harmful`` alert (``alert``)."""
    from ecdctr_pipeline.quality import alerts
    from ecdctr_pipeline.quality.gates import DAG_IDS

    a = settings.actr
    days = [day - dt.timedelta(days=i) for i in range(a.transfer_harm_days - 1, -1, -1)]
    lifts = {}
    for d in days:
        key = paths.evaluation_report(d)
        if d == day and current is not None:
            lifts[d.isoformat()] = float(current)
        elif store.exists(key):
            r = json.loads(store.get_bytes(key))
            if r.get("gauc_lift") is not None:
                lifts[d.isoformat()] = float(r["gauc_lift"])
    need = -(-a.transfer_harm_days // 2)
    mean = sum(lifts.values()) / len(lifts) if lifts else None
    harmful = len(lifts) >= need and mean < -a.transfer_harm_margin
    out = {"days": a.transfer_harm_days, "compared": len(lifts), "needed": need, "mean_lift": mean,
           "margin": a.transfer_harm_margin, "harmful": harmful, "lifts": lifts}
    if harmful and alert:
        out["alerts"] = alerts.send(settings.alerts, alerts.Alert(
            kind="transfer_harmful", subject=DAG_IDS["actr"], logical_date=day.isoformat(),
            summary=(f"A-CTR loses to Target-only: mean GAUC lift {mean:+.4f} over {len(lifts)} of the last "
                     f"{a.transfer_harm_days} days is below -{a.transfer_harm_margin} (actr.transfer_harm_margin)"),
            details=[{"day": d, "gauc_lift": x} for d, x in lifts.items()],
            context={"reports": [store.uri(paths.evaluation_report(d)) for d in lifts]}))
    return out


def cpm_variant(settings: Settings, store: ArtifactStore, monday: str | dt.date, *, tpm: bool = True,
                months: int | None = None, historical=None):
    """A CPM that is never published, trained like the Monday's CPM: without the TPM inputs
    (``tpm=False``), on the ``months`` calendar months before the Monday (see
    :func:`~ecdctr_pipeline.tiers.cpm.resolve`), or consuming the in-memory TPM tables
    ``historical`` instead of the published set (e.g. its last k months, :func:`tpm_variant`'s).
    Returns ``(model, metrics on the CPM's evaluation tail plus training's (``train_seconds``,
    ``train_loss``, early stopping), TrainArgs, rows trained on)``."""
    from ecdctr_pipeline.evaluation.holdout import evaluate_model
    from ecdctr_pipeline.modeling.training import quiet_tf

    quiet_tf()
    args = cpm.resolve(settings, store, cpm.plan(settings, monday), tpm=tpm, repretrain_months=months)
    if historical is not None:
        args = dataclasses.replace(args, tier="cpm_baseline", artifact="", historical=historical,
                                   who=f"cpm with TPM tables {historical.set_id} {monday}")
    t0 = time.perf_counter()
    result = cpm.run_training(args)
    seconds = round(time.perf_counter() - t0, 2)
    metrics, _ = evaluate_model(args, result.model)
    return result.model, {**metrics, **result.train_metrics, "train_seconds": seconds}, args, result.row_counts["train"]


def tpm_variant(settings: Settings, store: ArtifactStore, set_month: str, *, dim: int, months: int | None = None):
    """The TPM run of embedding set ``set_month`` with embedding dimension ``dim``, never published:
    its tables in memory (:class:`~ecdctr_pipeline.data.embedding_sets.HistoricalTables`) and the
    seconds it trained. ``months``: trained on that many months before ``set_month`` (their TPM
    features extracted here), only the last month's tables kept (KEEP-style's pre-training)."""
    from ecdctr_pipeline.data import embedding_sets, extract
    from ecdctr_pipeline.modeling.training import quiet_tf
    from ecdctr_pipeline.tiers import tpm

    quiet_tf()
    s = settings.model_copy(deep=True)
    s.tpm.embedding_dim = dim
    if months is not None:
        s.calendar.tpm_train_months, s.calendar.tpm_snapshot_months = months, 1
        extract.extract_tpm(s, store, set_month)
    args = tpm.resolve(s, store, tpm.plan(s, set_month))
    args = dataclasses.replace(args, tier="tpm_baseline", artifact="",
                               who=f"tpm dim {dim}{f' over {months} months' if months else ''} {set_month}")
    t0 = time.perf_counter()
    result = tpm.run_training(args)
    try:
        hist = embedding_sets.from_files(f"{args.artifact_id} (dim {dim})", args.months, result.files, dim)
    finally:
        result.cleanup()
    return hist, round(time.perf_counter() - t0, 2)


def source_only_scores(settings: Settings, store: ArtifactStore, day: str | dt.date, *, model):
    """Source-only (paper Table 4, §5.3.1: "there is no TPM here"): ``model``, the complete
    network trained without TPM inputs on the natural window of the CPM that A-CTR ``day``
    resolves (:func:`cpm_variant` with ``tpm=False``), scored on the day's ad holdout without
    fine-tuning: ``(labels, scores, users, {})``."""
    from ecdctr_pipeline.modeling.training import quiet_tf

    quiet_tf()
    args = actr.resolve(settings, store, actr.plan(settings, day), target_only=True)
    return _holdout_scores(args, model, {})


def _published(args, published):
    """``published`` = (CPM model, its TPM tables, CPM Monday) after checking that it is the CPM
    ``args`` resolved."""
    model, hist, monday = published
    if args.base_model.artifact_id != str(monday):
        raise EcdctrError(f"{args.who}: resolves CPM {args.base_model.artifact_id}, the loaded one is {monday}")
    return model, hist


def fine_tuned(settings: Settings, store: ArtifactStore, day: str | dt.date, *, base=None, policy: str | None = None,
               historical=None, published=None):
    """An A-CTR run of ``day`` that is never published, scored on its holdout: from the day's CPM
    (``base`` None, as ``ecdctr train actr`` resolves it) or from the Keras model ``base`` (e.g.
    :func:`cpm_variant`'s, consuming the TPM tables ``historical`` when it was trained with them),
    with the transfer ``policy`` (default: settings). ``published``: the day's CPM, its TPM
    tables and its Monday, already loaded (experiments load them once a week). Returns
    ``(labels, scores, users)`` of the holdout and what training recorded (``rows``,
    ``train_loss``, with early stopping ``epochs_run``, ``best_epoch``)."""
    from ecdctr_pipeline.modeling.training import quiet_tf

    quiet_tf()
    p = actr.plan(settings, day)
    policy = policy or settings.actr.transfer_policy
    if base is None:
        args = dataclasses.replace(actr.resolve(settings, store, p, policy=policy), artifact="")
        if published is not None:
            base, hist = _published(args, published)
            args = dataclasses.replace(args, historical=hist)
    else:
        args = dataclasses.replace(actr.resolve(settings, store, p, target_only=True), tier="actr_from_model",
                                   who=f"A-CTR from a given model {p.day}", transfer_policy=policy,
                                   historical=historical)
    result = actr.run_training(args, base=base)
    return _holdout_scores(args, result.model, {"rows": result.row_counts["train"], **result.train_metrics})


def joint_training_scores(settings: Settings, store: ArtifactStore, day: str | dt.date, *, head: str | None = None):
    """A model trained on both domains' rows. ``head`` None: Sample merging (paper Table 4), one
    complete network without TPM inputs trained on the natural rows of the CPM window that A-CTR
    ``day`` uses and the day's ad training rows together (no domain input: the paper just mixes
    the data); A-CTR's hyper-parameters and epoch budget, early stopping on the ad validation
    slice; scored on the ad holdout.
    ``head`` (:data:`~ecdctr_pipeline.modeling.models.MULTI_DOMAIN_HEADS`): the same training
    of a multi-domain model (Table 2's Share-Bottom, MMoE, STAR, CoNet), whose head routes each
    row by its domain (a ``domain`` input, natural 0, ad 1; the holdout is scored as domain 1).
    Returns ``(labels, scores, users, what training recorded)``."""
    from ecdctr_pipeline.modeling.models import build_complete_model, compile_model, compile_options
    from ecdctr_pipeline.modeling.preprocessing import DOMAIN, DOMAIN_CODES, FeatureLayout
    from ecdctr_pipeline.modeling.streaming import TaggedSource
    from ecdctr_pipeline.modeling.training import (
        fit, open_source, placement, quiet_tf, set_seed, train_metrics, training_sources,
    )

    quiet_tf()
    p = actr.plan(settings, day)
    ad = actr.resolve(settings, store, p, target_only=True)
    nat = cpm.resolve(settings, store, cpm.plan(settings, p.cpm_monday), tpm=False)
    # Sample merging just mixes the two domains' rows (the paper gives it no domain input); a
    # multi-domain head routes by the domain
    indicator = head is not None
    layout = FeatureLayout.complete(settings.features, domain_indicator=indicator)

    def tagged(*parts):
        return TaggedSource(tuple((src, ((DOMAIN, DOMAIN_CODES[d]),)) for src, d in parts))

    ad_train, ad_val = training_sources(ad)
    train = tagged((open_source(nat, nat.data.train_window), "natural"), (ad_train, "ad"))
    hp = ad.hparams
    set_seed(hp.seed)
    name = head or "sample_merging"
    with placement(ad).strategy.scope():
        model = compile_model(build_complete_model(settings.cpm, settings.features, None, name=name,
                                                   domain_indicator=indicator, head=head), hp.learning_rate,
                              **compile_options(ad.training))
    m = fit(model, train, layout, hparams=hp, training=ad.training, label=f"{name} {p.day}",
            validation=tagged((ad_val, "ad")) if ad_val is not None else None)
    return _holdout_scores(ad, model, {"rows": train.num_rows, "natural_rows": train.parts[0][0].num_rows,
                                       **train_metrics(m)}, layout=layout, wrap=lambda source: tagged((source, "ad")))
