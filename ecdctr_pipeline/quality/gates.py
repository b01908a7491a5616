"""The data-quality gate of each tier's run (``ecdctr gate``, the DAGs' ``quality_gate`` step).

Gates look at the *new* data of a run: TPM the newest month of ``features/tpm``, CPM the
newest 7 days of ``features/complete/natural``, A-CTR the newest day (its holdout) of
``raw/ad`` and ``features/complete/ad`` (older days were gated by earlier runs). Any failure
sends one alert for the run, then raises :class:`~ecdctr_pipeline.quality.suites.QualityGateFailed`.
"""

from __future__ import annotations

import logging

from ecdctr_pipeline.core import calendar, paths
from ecdctr_pipeline.core.settings import Settings
from ecdctr_pipeline.data.store import ArtifactStore
from ecdctr_pipeline.quality import alerts, suites

log = logging.getLogger(__name__)
DAG_IDS = {"tpm": "ecdctr_tpm_monthly", "cpm": "ecdctr_cpm_weekly", "actr": "ecdctr_actr_daily"}


def gate_days(settings: Settings, store: ArtifactStore, table: str, days: list[str], *, dag_id: str, ds: str) -> dict:
    """Validate ``table`` on ``days``; on any failure one alert for the run, then raise. Days
    recorded as having no impressions are not validated: the result names them (``empty_days``)
    and a warning is logged for each."""
    from ecdctr_pipeline.data import empty_days

    domain = empty_days.domain_of(table)
    empty = sorted(set(days) & empty_days.recorded(store, domain)) if domain else []
    for d in empty:
        log.warning("quality gate %s: %s accepted as an empty day (recorded by `ecdctr ingest --empty-day`)", table, d)
    results = [suites.validate(settings, store, table, d) for d in days if d not in empty]
    failed = [r for r in results if not r["success"]]
    if failed:
        details = [{"day": r["as_of"], **{k: f[k] for k in ("label", "column", "observed", "unexpected_count",
                                                                "examples", "bounds")}}
                   for r in failed for f in r["failed"]]
        alert = alerts.Alert(kind="quality_gate", subject=table, logical_date=ds,
                             summary=f"{len(details)} data-quality check(s) failed on {len(failed)} day(s) "
                                     f"({', '.join(r['as_of'] for r in failed[:3])})",
                             details=details, context={"dag_id": dag_id, "results": [r["stored_at"] for r in failed],
                                      "data_docs": [r.get("data_docs") for r in failed]})
        sent = alerts.send(settings.alerts, alert)
        raise suites.QualityGateFailed({**failed[0], "alerts": sent})
    return {"table": table, "days": days, "empty_days": empty, "checks": sum(r["checks"] for r in results),
            "seconds": round(sum(r["seconds"] for r in results), 2)}


WEEK_DAYS = 7  # the CPM's cadence (its DAG runs every Monday)


def gate(tier: str, settings: Settings, store: ArtifactStore, ds: str) -> dict:
    """The gate of ``tier``'s run for logical date ``ds``."""
    dag_id = DAG_IDS[tier]
    if tier == "tpm":
        plan = calendar.tpm_plan(calendar.Month.of(calendar.parse_date(ds)), settings.calendar)
        return gate_days(settings, store, paths.tpm_features(), plan.train_months[-1].window.partitions(),
                         dag_id=dag_id, ds=ds)
    if tier == "cpm":
        plan = calendar.cpm_plan(ds, settings.calendar)
        # the week's new days: the CPM runs weekly, earlier days of its window were gated by earlier runs
        return gate_days(settings, store, paths.complete_features("natural"), plan.window.partitions()[-WEEK_DAYS:],
                         dag_id=dag_id, ds=ds)
    plan = calendar.actr_plan(ds, settings.calendar)
    days = plan.holdout_window.partitions()
    raw = gate_days(settings, store, paths.raw_table("ad"), days, dag_id=dag_id, ds=ds)
    feats = gate_days(settings, store, paths.complete_features("ad"), days, dag_id=dag_id, ds=ds)
    return {"tables": [raw["table"], feats["table"]], "days": days, "empty_days": raw["empty_days"],
            "checks": raw["checks"] + feats["checks"]}
