"""CPM, weekly: the complete model on natural ``[W-28d, W-1d)``, consuming embedding set
``month(W-28d)`` (whose months all precede the window), evaluated on the tail ``[W-1d, W)``.

``resolve(..., repretrain_months=N)`` gives the paper's costly alternative, the efficiency
claim's baseline: the same network without TPM inputs re-pretrained on the ``N`` calendar months
of natural data before ``W`` (same hyper-parameters, same evaluation tail), never published."""

from __future__ import annotations

import dataclasses
import datetime as dt
from calendar import monthrange

from ecdctr_pipeline.core import calendar, paths
from ecdctr_pipeline.core.settings import Settings
from ecdctr_pipeline.data import artifacts, embedding_sets
from ecdctr_pipeline.data.store import ArtifactStore
from ecdctr_pipeline.modeling.preprocessing import FeatureLayout
from ecdctr_pipeline.modeling.training import (
    DataSpec, HParams, TrainArgs, TrainResult, fit, fit_resumable, historical_tables, pinned_version, placement,
    set_seed, train_metrics, training_sources,
)


def plan(settings: Settings, when) -> calendar.CPMPlan:
    return calendar.cpm_plan(when, settings.calendar)


def artifact(p: calendar.CPMPlan) -> tuple[str, str]:
    return p.monday.isoformat(), paths.cpm_checkpoint(p.monday)


def repretrain_plan(p: calendar.CPMPlan, months: int) -> calendar.CPMPlan:
    """``p`` with its window widened to the ``months`` calendar months before ``W`` (from the same
    day of month, clipped to the month's length); the evaluation tail is unchanged."""
    if months <= 0:
        raise calendar.CalendarError(f"re-pretraining months must be positive, got {months}")
    m = calendar.Month.of(p.monday) - months
    start = dt.date(m.year, m.month, min(p.monday.day, monthrange(m.year, m.month)[1]))
    window = calendar.Window(start, p.monday)
    return dataclasses.replace(p, window=window, train_window=calendar.Window(start, p.eval_window.start))


def resolve(settings: Settings, store: ArtifactStore, p: calendar.CPMPlan, *, tpm: bool = True,
            repretrain_months: int | None = None) -> TrainArgs:
    """The CPM run's :class:`TrainArgs`. Experiments' baselines, never published: ``tpm=False``
    trains the same network without the TPM inputs on the same window (Table 3's "CPM without
    TPM"); ``repretrain_months`` widens the window to that many months, without TPM inputs (the
    efficiency claim's re-pretraining)."""
    c = settings.cpm
    baseline = repretrain_months is not None or not tpm
    if repretrain_months is not None:
        p = repretrain_plan(p, repretrain_months)
        who, set_manifest = f"re-pretrain {repretrain_months} months {p.monday}", None
    elif not tpm:
        who, set_manifest = f"cpm without tpm {p.monday}", None
    else:
        who = f"train cpm {p.monday}"
        set_manifest = embedding_sets.resolve(store, p.embedding_set, consumer=who)
        artifacts.require_schema(set_manifest, settings.features.feature_schema(), who=who)
        calendar.check_non_overlap(p.embedding_set, set_manifest.months, p.window, tier=f"CPM {p.monday}")
    table = paths.complete_features("natural")
    version, empty = pinned_version(store, table, [p.train_window, p.eval_window], who=who,
                                    schema=settings.features.feature_schema(),
                                    max_empty=settings.calendar.max_empty_days)
    return TrainArgs(
        tier="cpm_baseline" if baseline else "cpm", who=who, logical_date=p.monday.isoformat(),
        artifact_id=p.monday.isoformat(), artifact="" if baseline else paths.cpm_checkpoint(p.monday), plan=p,
        store=store,
        data=DataSpec(table, version, p.train_window, p.eval_window, FeatureLayout.complete(settings.features),
                      empty),
        hparams=HParams(c.learning_rate, c.batch_size, c.epochs, c.seed), model=c, features=settings.features,
        embedding_set=set_manifest, data_window=p.window, training=settings.training,
        params={"train_window": p.train_window.to_dict(), "eval_window": p.eval_window.to_dict(), **c.model_dump()},
    )


def run_training(args: TrainArgs) -> TrainResult:
    from ecdctr_pipeline.modeling.models import build_complete_model, compile_model, compile_options

    hp = args.hparams
    hist = historical_tables(args)
    train, val = training_sources(args)
    set_seed(hp.seed)
    with placement(args).strategy.scope():
        model = compile_model(build_complete_model(args.model, args.features, hist, name="cpm"), hp.learning_rate,
                              **compile_options(args.training))
    if args.artifact:  # the CPM checkpoints each epoch in the store and resumes after a kill
        model, fit_metrics, resumed = fit_resumable(args, model, train, val)
    else:  # the re-pretraining baseline (never published)
        fit_metrics, resumed = fit(model, train, args.data.layout, hparams=hp, training=args.training,
                                   label=args.who, validation=val), -1
    return TrainResult(model=model, train_metrics=train_metrics(fit_metrics),
                       row_counts={"train": train.num_rows, **({"validation": val.num_rows} if val else {})},
                       extra={"resumed_after_epoch": resumed} if resumed >= 0 else {})


def assess(args: TrainArgs, result: TrainResult):
    """GAUC, AUC and log loss on the tail ``[W-1d, W)`` (no blessing: A-CTR's gate guards serving)."""
    from ecdctr_pipeline.evaluation.holdout import evaluate_model

    metrics, rows = evaluate_model(args, result.model)
    result.row_counts["eval"] = rows
    return {**metrics, **result.train_metrics}, None


def summary(m: artifacts.Manifest) -> dict:
    return {"embedding_set": m.inputs.embedding_set, "embedding_months": list(m.inputs.embedding_months)}
