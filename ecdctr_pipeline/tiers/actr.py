"""A-CTR, daily: the complete model initialised from the CPM checkpoint (transfer policy,
BatchNorm excluded by default), fine-tuned on ad ``[D-28d, D-1d)``, evaluated on the holdout
``[D-1d, D)`` and blessed or rejected against the served model.

The CPM checkpoint is the one the DAG's ``wait_for_cpm`` sensor chose (``--cpm``), checked
against the plan and never chosen again; manual runs without ``--cpm`` resolve the plan's
(primary, else the allowed fallback). The embedding set is the one that CPM consumed, and its
months are checked against this run's window from the set's own manifest.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

from ecdctr_pipeline.core import calendar, paths
from ecdctr_pipeline.core.errors import ArtifactMissingError, CorruptArtifactError
from ecdctr_pipeline.core.settings import Settings
from ecdctr_pipeline.data import artifacts, embedding_sets
from ecdctr_pipeline.data.store import ArtifactStore
from ecdctr_pipeline.modeling.preprocessing import FeatureLayout
from ecdctr_pipeline.modeling.training import (
    DataSpec, HParams, TrainArgs, TrainResult, fit, fit_resumable, historical_tables, load_model, pinned_version,
    placement, set_seed, train_metrics, training_sources,
)


class CheckpointMissing(ArtifactMissingError):
    """No usable CPM checkpoint for an A-CTR run."""


def plan(settings: Settings, when) -> calendar.ACTRPlan:
    return calendar.actr_plan(when, settings.calendar)


def artifact(p: calendar.ACTRPlan) -> tuple[str, str]:
    return p.day.isoformat(), paths.actr_model(p.day)


def resolve_cpm(store: ArtifactStore, p: calendar.ACTRPlan) -> tuple[artifacts.Manifest, bool]:
    """The CPM checkpoint an A-CTR run uses: the plan's Monday, else the allowed fallback.

    Returns (manifest, fallback_used). Raises :class:`CheckpointMissing` naming what is absent.
    """
    primary = artifacts.find_manifest(store, paths.cpm_checkpoint(p.cpm_monday))
    if primary is not None:
        return primary, False
    if p.fallback_monday is not None:
        fb = artifacts.find_manifest(store, paths.cpm_checkpoint(p.fallback_monday))
        if fb is not None:
            return fb, True
        raise CheckpointMissing(f"A-CTR {p.day}: neither CPM checkpoint W={p.cpm_monday} nor the fallback "
                                f"W={p.fallback_monday} is published")
    raise CheckpointMissing(f"A-CTR {p.day}: CPM checkpoint W={p.cpm_monday} is not published and the "
                            f"previous one (W={p.cpm_monday - dt.timedelta(days=7)}) is older than "
                            f"max_cpm_staleness_days={p.max_cpm_staleness_days}")


def chosen_cpm(store: ArtifactStore, p: calendar.ACTRPlan, monday: str | dt.date) -> tuple[artifacts.Manifest, bool]:
    """The CPM checkpoint a sensor chose (``--cpm``), checked against the plan, never re-chosen:
    it must be the plan's Monday or its allowed fallback, and published. Returns (manifest, fallback)."""
    w = calendar.parse_date(monday, what="--cpm")
    allowed = [p.cpm_monday] + ([p.fallback_monday] if p.fallback_monday else [])
    if w not in allowed:
        fb = f"its allowed fallback W={p.fallback_monday}" if p.fallback_monday else \
            f"a fallback (none allowed: max_cpm_staleness_days={p.max_cpm_staleness_days})"
        raise calendar.CalendarError(f"A-CTR {p.day}: --cpm {w} is neither the plan's CPM checkpoint "
                                     f"W={p.cpm_monday} nor {fb}")
    m = artifacts.find_manifest(store, paths.cpm_checkpoint(w))
    if m is None:
        raise CheckpointMissing(f"A-CTR {p.day}: the chosen CPM checkpoint W={w} is not published")
    return m, w != p.cpm_monday


def resolve(settings: Settings, store: ArtifactStore, p: calendar.ACTRPlan, *, cpm: str | dt.date | None = None,
            policy: str | None = None, target_only: bool = False) -> TrainArgs:
    """The run's :class:`TrainArgs`. ``target_only``: the paper's baseline on the same window
    (same network, random init, no TPM inputs), which never publishes."""
    who = f"{'target-only' if target_only else 'train actr'} {p.day}"
    table = paths.complete_features("ad")
    version, empty = pinned_version(store, table, [p.train_window, p.holdout_window], who=who,
                                    schema=settings.features.feature_schema(),
                                    max_empty=settings.calendar.max_empty_days)
    a = settings.actr
    common = dict(
        logical_date=p.day.isoformat(), artifact_id=p.day.isoformat(), plan=p, store=store,
        data=DataSpec(table, version, p.train_window, p.holdout_window, FeatureLayout.complete(settings.features),
                      empty),
        hparams=HParams(a.learning_rate, a.batch_size, a.epochs, a.seed), model=settings.cpm,
        features=settings.features, data_window=p.window, training=settings.training,
        params={"train_window": p.train_window.to_dict(), "holdout_window": p.holdout_window.to_dict(),
                "learning_rate": a.learning_rate, "epochs": a.epochs, "batch_size": a.batch_size,
                "bless_tolerance": a.bless_tolerance, "min_gauc": a.min_gauc, "min_gauc_coverage": a.min_gauc_coverage,
                **({"bless_requires_target_only": True, "target_only_margin": a.target_only_margin}
                   if a.bless_requires_target_only and not target_only else {})},
    )
    if target_only:
        return TrainArgs(tier="target_only", who=who, artifact="", **common)
    cpm_manifest, fallback = resolve_cpm(store, p) if cpm is None else chosen_cpm(store, p, cpm)
    set_manifest = embedding_sets.resolve(store, cpm_manifest.inputs.embedding_set, consumer=who)
    for m in (cpm_manifest, set_manifest):
        artifacts.require_schema(m, settings.features.feature_schema(), who=who)
    if list(cpm_manifest.inputs.embedding_months) != list(set_manifest.months):  # the set loaded decides
        raise CorruptArtifactError(
            f"{who}: CPM {cpm_manifest.artifact_id}'s manifest says embedding set {set_manifest.artifact_id} has months "
            f"{', '.join(cpm_manifest.inputs.embedding_months) or 'none'}, the set's own manifest says "
            f"{', '.join(set_manifest.months)}: republish the CPM")
    calendar.check_non_overlap(set_manifest.artifact_id, set_manifest.months, p.train_window, tier=f"A-CTR {p.day}")
    choice = {"checkpoint": cpm_manifest.artifact_id, "fallback": fallback,
              "chosen_by": "resolver (no --cpm)" if cpm is None else "--cpm (the wait_for_cpm sensor)"}
    return TrainArgs(tier="actr", who=who, artifact=paths.actr_model(p.day), embedding_set=set_manifest,
                     base_model=cpm_manifest, base_prefix=paths.cpm_checkpoint(cpm_manifest.artifact_id),
                     transfer_policy=policy or a.transfer_policy, lineage={"cpm_choice": choice}, **common)


def run_training(args: TrainArgs, *, base=None) -> TrainResult:
    """Fine-tune from the CPM (or, for Target-only, train from random weights) on the ad window.
    ``base``: a Keras model to start from instead of ``args.base_model`` (experiments' baselines,
    e.g. the re-pretrained complete model; ``args.transfer_policy`` applies)."""
    from ecdctr_pipeline.modeling.models import build_complete_model, compile_model, compile_options
    from ecdctr_pipeline.modeling.transfer import warm_start

    hp = args.hparams
    hist = historical_tables(args)
    train, val = training_sources(args)
    if base is None and args.base_model:
        base = load_model(args.store, args.base_prefix, args.base_model)
    set_seed(hp.seed)
    with placement(args).strategy.scope():
        model = build_complete_model(args.model, args.features, hist,
                                     name="actr" if base is not None else "target_only",
                                     source_sequence=args.data.layout.source_sequence)
        extra = {"warm_start": warm_start(model, base, args.transfer_policy)} if base is not None else {}
        compile_model(model, hp.learning_rate, **compile_options(args.training))
    if args.artifact:  # a published run checkpoints each epoch in the store and resumes after a kill
        model, fit_metrics, resumed = fit_resumable(args, model, train, val)
        if resumed >= 0:
            extra["resumed_after_epoch"] = resumed
    else:  # runs that never publish (Target-only, experiments' baselines)
        fit_metrics = fit(model, train, args.data.layout, hparams=hp, training=args.training, label=args.who,
                          validation=val)
    return TrainResult(model=model, train_metrics=train_metrics(fit_metrics),
                       row_counts={"train": train.num_rows, **({"validation": val.num_rows} if val else {})}, extra=extra)


def assess(args: TrainArgs, result: TrainResult):
    """Holdout metrics and the blessing gate's verdict against the served model. A holdout that
    cannot judge the model (GAUC coverage zero or below ``actr.min_gauc_coverage``) gives a
    not-evaluable verdict: never blessed, no comparison with the served model."""
    from ecdctr_pipeline.evaluation.blessing import judge
    from ecdctr_pipeline.evaluation.holdout import holdout_source
    from ecdctr_pipeline.evaluation.metrics import evaluate
    from ecdctr_pipeline.modeling.streaming import score_stream

    p = args.plan
    tolerance = float(args.params["bless_tolerance"])
    if set(p.holdout_window.partitions()) <= set(args.data.empty_days):  # nothing to score
        result.row_counts["holdout"] = 0
        reason = f"holdout {p.holdout_window} has no impressions (recorded empty: {', '.join(args.data.empty_days)})"
        return ({"gauc": None, "gauc_coverage": 0.0, "gauc_users": 0, "impressions": 0, **result.train_metrics},
                artifacts.Blessing(blessed=False, candidate_gauc=None, tolerance=tolerance,
                                   holdout=p.holdout_window.to_dict(), not_evaluable=reason))
    holdout = holdout_source(args)
    result.row_counts["holdout"] = holdout.num_rows
    floor = float(args.params.get("min_gauc_coverage", 0.0))
    metrics = evaluate(*score_stream(result.model, holdout, args.data.layout), allow_no_gauc=True)
    if metrics["gauc"] is None:  # no user of the holdout has both classes
        reason = f"holdout {p.holdout_window}: {metrics.pop('gauc_error')}"
    elif metrics["gauc_coverage"] < floor:
        reason = (f"GAUC coverage {metrics['gauc_coverage']:.3f} of holdout {p.holdout_window} is below "
                  f"actr.min_gauc_coverage {floor}")
    else:
        reason = None
    if reason is not None:
        blessing = artifacts.Blessing(blessed=False, candidate_gauc=metrics["gauc"], tolerance=tolerance,
                                      holdout=p.holdout_window.to_dict(), not_evaluable=reason)
    else:
        blessing = judge(args.store, metrics["gauc"], holdout_source=holdout, layout=args.data.layout, day=p.day,
                         tolerance=tolerance, holdout=p.holdout_window.to_dict(),
                         floor=float(args.params.get("min_gauc", 0.0)))
        if args.params.get("bless_requires_target_only"):
            blessing = against_target_only(args, blessing, holdout)
    return {**metrics, **result.train_metrics}, blessing


def target_only_args(args: TrainArgs) -> TrainArgs:
    """The Target-only run of A-CTR ``args``' day: the same window, table version, seed and
    budget, random weights, no TPM inputs; never published."""
    return dataclasses.replace(args, tier="target_only", who=f"target-only {args.logical_date}", artifact="",
                               embedding_set=None, base_model=None, base_prefix=None, transfer_policy=None,
                               lineage={}, params={k: v for k, v in args.params.items()
                                                   if k not in ("bless_requires_target_only", "target_only_margin")})


def against_target_only(args: TrainArgs, blessing: artifacts.Blessing, holdout) -> artifacts.Blessing:
    """``actr.bless_requires_target_only``: train Target-only on the run's window, score it on the
    same holdout rows and bless only if the candidate is not worse by more than the margin."""
    from ecdctr_pipeline.evaluation.metrics import MetricError, evaluate, is_blessed
    from ecdctr_pipeline.modeling.streaming import score_stream

    margin = float(args.params["target_only_margin"])
    to_args = target_only_args(args)
    model = run_training(to_args).model
    try:
        g = evaluate(*score_stream(model, holdout, args.data.layout))["gauc"]
        record = artifacts.Baseline(model="target-only", gauc=g)
    except MetricError as exc:  # cannot happen when the candidate scored: same rows; kept explicit
        record = artifacts.Baseline(model="target-only", gauc=None, error=str(exc))
    beats = record.gauc is not None and is_blessed(blessing.candidate_gauc, record.gauc, margin)
    return blessing.model_copy(update={"blessed": blessing.blessed and beats, "target_only": record,
                                       "target_only_margin": margin})


def summary(m: artifacts.Manifest) -> dict:
    return {"blessed": m.blessed, "blessing": m.blessing.model_dump() if m.blessing else None,
            "cpm_checkpoint": m.inputs.cpm_checkpoint, "cpm_choice": m.extra.get("cpm_choice"),
            "embedding_set": m.inputs.embedding_set}
