"""The orchestration-only logic behind ``ecdctr gate``, ``ecdctr check`` and ``ecdctr evaluate cpm``:
plain functions of primitives (ISO dates) returning small dicts (the steps' XCom). The DAG
steps, the sensors and ``ecdctr backfill`` reach them through the CLI (see :mod:`steps`).

Gates look at the *new* data of a run: TPM the newest month of ``features/tpm``, CPM the
newest 7 days of ``features/complete/natural``, A-CTR the newest day (its holdout) of
``raw/ad`` and ``features/complete/ad`` (older days were gated by earlier runs).
"""

from __future__ import annotations

import datetime as dt
import logging

from .. import calendar, paths

log = logging.getLogger(__name__)


def _settings():
    from ..settings import load_settings

    return load_settings()


# ------------------------------------------------------------------ gates
def gate_days(table: str, days: list[str], *, dag_id: str, ds: str, settings=None) -> dict:
    """Validate ``table`` on ``days``; on any failure one alert for the run, then raise."""
    from .. import alerts, quality

    settings = settings or _settings()
    results = [quality.validate(settings, table, d) for d in days]
    failed = [r for r in results if not r["success"]]
    if failed:
        details = [{"day": r["as_of"], **{k: f[k] for k in ("label", "column", "observed", "unexpected_count",
                                                                "examples", "bounds")}}
                   for r in failed for f in r["failed"]]
        alert = alerts.Alert(kind="quality_gate", subject=table, logical_date=ds,
                             summary=f"{len(details)} data-quality check(s) failed on {len(failed)} day(s) "
                                     f"({', '.join(r['as_of'] for r in failed[:3])})",
                             details=details, context={"dag_id": dag_id, "results": [r["stored_at"] for r in failed]})
        sent = alerts.send(settings.alerts, alert)
        result = {**failed[0], "alerts": sent}
        raise quality.QualityGateFailed(result)
    return {"table": table, "days": days, "checks": sum(r["checks"] for r in results),
            "seconds": round(sum(r["seconds"] for r in results), 2)}


def gate_tpm(ds: str, dag_id: str = "ecdctr_tpm_monthly", settings=None) -> dict:
    settings = settings or _settings()
    plan = calendar.tpm_plan(calendar.Month.of(calendar.parse_date(ds)), settings.calendar)
    return gate_days(paths.tpm_features(), plan.train_months[-1].window.partitions(), dag_id=dag_id, ds=ds,
                     settings=settings)


def gate_cpm(ds: str, dag_id: str = "ecdctr_cpm_weekly", settings=None) -> dict:
    settings = settings or _settings()
    plan = calendar.cpm_plan(ds, settings.calendar)
    return gate_days(paths.complete_features("natural"), plan.window.partitions()[-7:], dag_id=dag_id, ds=ds,
                     settings=settings)


def gate_actr(ds: str, dag_id: str = "ecdctr_actr_daily", settings=None) -> dict:
    settings = settings or _settings()
    plan = calendar.actr_plan(ds, settings.calendar)
    days = plan.holdout_window.partitions()
    raw = gate_days(paths.raw_table("ad"), days, dag_id=dag_id, ds=ds, settings=settings)
    feats = gate_days(paths.complete_features("ad"), days, dag_id=dag_id, ds=ds, settings=settings)
    return {"tables": [raw["table"], feats["table"]], "days": days, "checks": raw["checks"] + feats["checks"]}


# ------------------------------------------------------------------ upstream readiness (sensors)
def embedding_set_ready(ds: str, settings=None) -> dict | None:
    """For the CPM of Monday ``ds``: the set's summary when published; None while absent.

    Raises :class:`~ecdctr_pipeline.errors.OverlapError` at once (never waits) when the published
    set's manifest names a month that is not before the CPM window's first month.
    """
    from .. import artifacts
    from ..store import open_store

    settings = settings or _settings()
    plan = calendar.cpm_plan(ds, settings.calendar)
    store = open_store(settings.store)
    m = artifacts.find_manifest(store, paths.tpm_set(plan.embedding_set))
    if m is None:
        return None
    calendar.check_non_overlap(plan.embedding_set, m.months, plan.window, tier=f"CPM {plan.monday}")
    return {"embedding_set": plan.embedding_set, "months": m.months, "uri": store.uri(paths.tpm_set(plan.embedding_set))}


def describe_missing_set(ds: str, settings=None) -> str:
    settings = settings or _settings()
    plan = calendar.cpm_plan(ds, settings.calendar)
    return (f"embedding set {plan.embedding_set} (months {', '.join(str(m) for m in plan.embedding_months)}) "
            f"needed by CPM {plan.monday} is not published")


def cpm_checkpoint_ready(ds: str, waited_s: float, settings=None) -> dict | None:
    """For the A-CTR of day ``ds``: the CPM checkpoint to use, or None to keep waiting.

    The plan's Monday when published. After ``actr.cpm_wait_timeout_s`` of waiting, the previous
    Monday's checkpoint when the staleness policy allows it (and an alert says so).
    """
    from .. import alerts, artifacts
    from ..store import open_store

    settings = settings or _settings()
    plan = calendar.actr_plan(ds, settings.calendar)
    store = open_store(settings.store)
    if artifacts.find_manifest(store, paths.cpm_checkpoint(plan.cpm_monday)) is not None:
        return {"cpm_checkpoint": plan.cpm_monday.isoformat(), "fallback": False}
    if waited_s >= settings.actr.cpm_wait_timeout_s and plan.fallback_monday is not None:
        if artifacts.find_manifest(store, paths.cpm_checkpoint(plan.fallback_monday)) is not None:
            alerts.send(settings.alerts, alerts.Alert(
                kind="cpm_fallback", subject="ecdctr_actr_daily", logical_date=ds,
                summary=f"CPM checkpoint W={plan.cpm_monday} is late; A-CTR falls back to W={plan.fallback_monday}",
                details=[{"waited_s": round(waited_s), "max_cpm_staleness_days": plan.max_cpm_staleness_days}]))
            return {"cpm_checkpoint": plan.fallback_monday.isoformat(), "fallback": True}
    return None


def describe_missing_cpm(ds: str, settings=None) -> str:
    plan = calendar.actr_plan(ds, (settings or _settings()).calendar)
    fb = f" (fallback W={plan.fallback_monday} not available either)" if plan.fallback_monday else \
        " (no fallback: the previous checkpoint is older than max_cpm_staleness_days)"
    return f"CPM checkpoint W={plan.cpm_monday} needed by A-CTR {plan.day} is not published{fb}"


# ------------------------------------------------------------------ evaluation
def evaluate_cpm(ds: str, settings=None) -> dict:
    """The CPM's evaluation on its held-out tail, from its manifest (refuses a degenerate model)."""
    from .. import artifacts
    from ..errors import EcdctrError
    from ..store import open_store

    settings = settings or _settings()
    m = artifacts.read_manifest(open_store(settings.store), paths.cpm_checkpoint(calendar.parse_date(ds)))
    if not m.metrics.get("gauc_coverage"):
        raise EcdctrError(f"CPM {ds}: no GAUC on the evaluation tail (coverage {m.metrics.get('gauc_coverage')})")
    return {k: m.metrics.get(k) for k in ("gauc", "gauc_coverage", "auc", "logloss")}


def waited_since(logical_end: dt.datetime, now: dt.datetime) -> float:
    return max(0.0, (now - logical_end).total_seconds())
