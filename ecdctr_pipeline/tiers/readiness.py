"""What the DAGs' sensors wait for (``ecdctr check``): the embedding set a CPM run consumes and
the CPM checkpoint an A-CTR run fine-tunes from (the plan's, or the allowed fallback once late)."""

from __future__ import annotations

import datetime as dt
import logging

from ecdctr_pipeline.core import calendar, paths
from ecdctr_pipeline.core.settings import Settings
from ecdctr_pipeline.data import artifacts
from ecdctr_pipeline.data.store import ArtifactStore

log = logging.getLogger(__name__)


def embedding_set_ready(settings: Settings, store: ArtifactStore, ds: str) -> dict | None:
    """For the CPM of Monday ``ds``: the set's summary when published; None while absent.

    Raises :class:`~ecdctr_pipeline.core.errors.OverlapError` at once (never waits) when the published
    set's manifest names a month that is not before the CPM window's first month.
    """
    plan = calendar.cpm_plan(ds, settings.calendar)
    m = artifacts.find_manifest(store, paths.tpm_set(plan.embedding_set))
    if m is None:
        return None
    calendar.check_non_overlap(plan.embedding_set, m.months, plan.window, tier=f"CPM {plan.monday}")
    return {"embedding_set": plan.embedding_set, "months": m.months, "uri": store.uri(paths.tpm_set(plan.embedding_set)),
            **_stale(store, m, f"embedding set {plan.embedding_set}")}


def _stale(store: ArtifactStore, m: artifacts.Manifest, what: str) -> dict:
    """``{"stale": [...]}``: the raw days ``m`` was trained on that changed since, or ``{}`` (a
    warning in the sensor's log: the artifact is still used; its own tier's next run retrains it)."""
    from ecdctr_pipeline.data import freshness

    changed = freshness.changes(store, m)
    if changed:
        log.warning("%s was trained on raw data that changed since: %s; rerun its tier for %s to retrain it",
                    what, freshness.describe(changed), m.logical_date)
    return {"stale": [c.to_dict() for c in changed]} if changed else {}


def describe_missing_set(settings: Settings, ds: str) -> str:
    plan = calendar.cpm_plan(ds, settings.calendar)
    return (f"embedding set {plan.embedding_set} (months {', '.join(str(m) for m in plan.embedding_months)}) "
            f"needed by CPM {plan.monday} is not published")


def cpm_checkpoint_ready(settings: Settings, store: ArtifactStore, ds: str, waited_s: float, *,
                         alert: bool = True) -> dict | None:
    """For the A-CTR of day ``ds``: the CPM checkpoint to use, or None to keep waiting.

    The plan's Monday when published. After ``actr.cpm_wait_timeout_s`` of waiting, the previous
    Monday's checkpoint when the staleness policy allows it (and, with ``alert``, a
    ``cpm_fallback`` alert says so: the DAG's sensor passes ``ecdctr check cpm --alert``; a check
    run by hand only logs it).
    """
    from ecdctr_pipeline.quality import alerts

    plan = calendar.actr_plan(ds, settings.calendar)
    primary = artifacts.find_manifest(store, paths.cpm_checkpoint(plan.cpm_monday))
    if primary is not None:
        return {"cpm_checkpoint": plan.cpm_monday.isoformat(), "fallback": False,
                **_stale(store, primary, f"CPM checkpoint W={plan.cpm_monday}")}
    if waited_s >= settings.actr.cpm_wait_timeout_s and plan.fallback_monday is not None:
        if artifacts.find_manifest(store, paths.cpm_checkpoint(plan.fallback_monday)) is not None:
            if not alert:
                log.warning("CPM checkpoint W=%s is late; A-CTR %s would fall back to W=%s (no alert sent: "
                            "pass --alert to send one)", plan.cpm_monday, ds, plan.fallback_monday)
                return {"cpm_checkpoint": plan.fallback_monday.isoformat(), "fallback": True}
            alerts.send(settings.alerts, alerts.Alert(
                kind="cpm_fallback", subject="ecdctr_actr_daily", logical_date=ds,
                summary=f"CPM checkpoint W={plan.cpm_monday} is late; A-CTR falls back to W={plan.fallback_monday}",
                details=[{"waited_s": round(waited_s), "max_cpm_staleness_days": plan.max_cpm_staleness_days}]))
            return {"cpm_checkpoint": plan.fallback_monday.isoformat(), "fallback": True}
    return None


def describe_missing_cpm(settings: Settings, ds: str) -> str:
    plan = calendar.actr_plan(ds, settings.calendar)
    fb = f" (fallback W={plan.fallback_monday} not available either)" if plan.fallback_monday else \
        " (no fallback: the previous checkpoint is older than max_cpm_staleness_days)"
    return f"CPM checkpoint W={plan.cpm_monday} needed by A-CTR {plan.day} is not published{fb}"


def waited_since(logical_end: dt.datetime, now: dt.datetime) -> float:
    return max(0.0, (now - logical_end).total_seconds())
