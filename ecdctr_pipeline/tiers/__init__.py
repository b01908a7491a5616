"""The three tiers of E-CDCTR, one module each: :mod:`.tpm` (monthly), :mod:`.cpm` (weekly),
:mod:`.actr` (daily), plus :mod:`.baselines` (Target-only) and :mod:`.readiness` (what the
sensors wait for).

Each tier module has the same four functions, which :func:`train` chains:

* ``plan(settings, when)`` — the calendar plan of the run (windows, artifact id);
* ``resolve(settings, store, plan, **options) -> TrainArgs`` — pins the feature table's
  version, finds the embedding set and the base model, and checks the calendar contract;
* ``run_training(args) -> TrainResult`` — trains, nothing else;
* ``assess(args, result) -> (metrics, blessing)`` — evaluation on the run's held-out data
  (and A-CTR's blessing), through :mod:`ecdctr_pipeline.evaluation`.

:func:`train` then publishes through :func:`ecdctr_pipeline.modeling.training.publish`, the one
publishing path of all tiers. Idempotent for the logical date: a published artifact is left
alone unless ``force``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import importlib
import json
import logging
import time
from types import ModuleType

from ecdctr_pipeline.core import paths
from ecdctr_pipeline.core.errors import CorruptArtifactError
from ecdctr_pipeline.core.settings import Settings
from ecdctr_pipeline.data import artifacts, freshness, lineage
from ecdctr_pipeline.data.store import ArtifactStore
from ecdctr_pipeline.modeling.training import TierRun

log = logging.getLogger(__name__)

TIER_NAMES = ("tpm", "cpm", "actr")


def module(tier: str) -> ModuleType:
    if tier not in TIER_NAMES:
        raise ValueError(f"unknown tier {tier!r}: expected one of {', '.join(TIER_NAMES)}")
    return importlib.import_module(f"{__name__}.{tier}")


def train(tier: str, settings: Settings, store: ArtifactStore, when, *, force: bool = False, **options) -> TierRun:
    """Plan, resolve, train, assess and publish one run of ``tier`` for its logical date ``when``."""
    from ecdctr_pipeline.modeling.training import clear_resume, placement, publish, quiet_tf

    quiet_tf()
    t0 = time.perf_counter()
    mod = module(tier)
    plan = mod.plan(settings, when)
    artifact_id, prefix = mod.artifact(plan)
    try:
        existing = artifacts.find_manifest(store, prefix)
    except CorruptArtifactError as exc:
        if not force:
            raise CorruptArtifactError(f"{exc}; retrain with --force to replace it") from None
        log.warning("%s: replacing an unreadable artifact (%s)", tier, exc)
        existing = None
    changed = freshness.changes(store, existing) if existing is not None and not force else []
    if existing is not None and not force and not changed:
        return TierRun(tier, prefix, existing.logical_date, True, existing.metrics, mod.summary(existing))
    store.check_access()  # a read-only store fails now, not after the training it could not publish
    args = with_raw_inputs(settings, store, tier, plan, mod.resolve(settings, store, plan, **options))
    if changed:  # the raw data it was trained on changed: retrain once the features hold the change
        old = {t: r.get("days") for t, r in existing.inputs.raw_tables.items()}
        if old == {t: r.get("days") for t, r in args.raw_inputs.items()}:
            log.warning("%s %s: %s, but %s is not re-extracted yet: run `ecdctr extract` for this window, then "
                        "train again", tier, artifact_id, freshness.describe(changed), args.data.table)
            return TierRun(tier, prefix, existing.logical_date, True, existing.metrics,
                           {**mod.summary(existing), "stale": [c.to_dict() for c in changed]})
        log.warning("%s %s: %s; retraining on %s v%s (was v%s)", tier, artifact_id, freshness.describe(changed),
                    args.data.table, args.data.version, existing.inputs.delta_tables.get(args.data.table))
        args = dataclasses.replace(args, lineage={**args.lineage, "retrained_because": {
            "previous_attempt": existing.attempt, "previous_delta_tables": existing.inputs.delta_tables,
            "previous_raw_versions": {t: r.get("version") for t, r in existing.inputs.raw_tables.items()},
            "changed": [c.to_dict() for c in changed]}})
    # first: a multi-worker runtime is configured before anything touches TensorFlow (A-CTR loads
    # its CPM before it builds the model; TF refuses collective ops configured after that)
    place = placement(args)
    t_train = time.perf_counter()
    result = mod.run_training(args)
    result.extra["train_seconds"] = round(time.perf_counter() - t_train, 2)  # training only (manifest extra)
    if not place.is_chief:  # a multi-worker run: worker 0 evaluates and publishes
        result.cleanup()
        return TierRun(tier, prefix, args.logical_date, False, result.train_metrics,
                       {"worker": place.worker, "workers": place.workers, "published_by": "worker 0"},
                       round(time.perf_counter() - t0, 2))
    try:
        metrics, blessing = mod.assess(args, result)
        files = None
        if blessing is not None:  # the gate's evidence, next to the model
            files = {"eval.json": json.dumps({"holdout": blessing.holdout, "metrics": metrics,
                                              "blessing": blessing.model_dump()}, indent=2).encode()}
        manifest = publish(args, result, metrics=metrics, blessing=blessing, files=files)
    finally:
        result.cleanup()
    lineage.emit(settings.orchestration, store, prefix, manifest)
    if blessing is not None and not blessing.blessed:
        _alert_unblessed(settings, store, tier, args.logical_date, blessing, metrics)
    clear_resume(args)  # published: the in-progress checkpoint is not needed any more
    return TierRun(tier, prefix, args.logical_date, False, manifest.metrics, mod.summary(manifest),
                   round(time.perf_counter() - t0, 2))


def with_raw_inputs(settings: Settings, store: ArtifactStore, tier: str, plan, args):
    """``args`` with the raw days its pinned feature table was extracted from (recorded in the
    manifest; :mod:`ecdctr_pipeline.data.freshness`)."""
    from ecdctr_pipeline.data import extract

    job = {"tpm": lambda: extract.tpm_job(settings, plan.month),
           "cpm": lambda: extract.complete_job(settings, "natural", plan.monday),
           "actr": lambda: extract.complete_job(settings, "ad", plan.day)}[tier]()
    raw = extract.built_from(store, job, version=args.data.version)
    if raw is None:
        log.warning("%s: %s v%s holds no extraction of window %s under these settings: the raw days it came "
                    "from are not recorded", args.who, args.data.table, args.data.version, job.window)
    return dataclasses.replace(args, raw_inputs=raw or {})


def _alert_unblessed(settings: Settings, store: ArtifactStore, tier: str, day: str, blessing, metrics: dict) -> None:
    """The day's model was not blessed: published unblessed, not exported, the served model stays.
    ``not_evaluable`` when the holdout could not judge it, ``model_rejected`` when the gate did."""
    from ecdctr_pipeline.quality import alerts

    details = {"gauc": metrics.get("gauc"), "gauc_coverage": metrics.get("gauc_coverage"),
               "impressions": metrics.get("impressions"), "holdout": blessing.holdout}
    if blessing.not_evaluable:
        kind, why = "not_evaluable", f"not evaluable: {blessing.not_evaluable}"
    else:
        kind, why = "model_rejected", blessing.describe()
        details.update(min_gauc=blessing.min_gauc, tolerance=blessing.tolerance,
                       served_model=blessing.baseline and blessing.baseline.model,
                       served_gauc=blessing.baseline and blessing.baseline.gauc)
    alerts.send(settings.alerts, alerts.Alert(
        kind=kind, subject=f"ecdctr_{tier}", logical_date=day,
        summary=f"{tier} {day} {why}; published unblessed, the served model stays", details=[details]))
    _alert_if_served_stale(settings, store, tier, day)


def _alert_if_served_stale(settings: Settings, store: ArtifactStore, tier: str, day: str) -> None:
    """``served_model_stale``: the served version's A-CTR day is more than
    ``alerts.max_served_age_days`` before ``day`` (checked whenever a day's model is not blessed:
    a blessed one is exported and served next)."""
    from ecdctr_pipeline.quality import alerts
    from ecdctr_pipeline.serving.pointer import read_served

    version = read_served(store).get("version")
    m = artifacts.find_manifest(store, paths.serving_version(version)) if version is not None else None
    if m is None or not m.inputs.actr_model:
        return
    age = (dt.date.fromisoformat(day) - dt.date.fromisoformat(m.inputs.actr_model)).days
    limit = settings.alerts.max_served_age_days
    if age > limit:
        alerts.send(settings.alerts, alerts.Alert(
            kind="served_model_stale", subject=f"ecdctr_{tier}", logical_date=day,
            summary=(f"the served model (version {version}, A-CTR {m.inputs.actr_model}) is {age} days old on {day}, "
                     f"more than alerts.max_served_age_days {limit}: no model since was blessed"),
            details=[{"served_version": version, "served_actr_model": m.inputs.actr_model, "age_days": age,
                      "max_served_age_days": limit}]))
