"""Airflow callbacks: every task failure (sensor timeouts included) sends one alert through the
configured notifiers, naming DAG, logical date, task and reason. Quality-gate failures have
already alerted with their checks and are not alerted twice. A missed deadline of the daily DAG
(``orchestration.actr_deadline_h``) sends ``deadline_missed``."""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)

GATE_MARK = "quality gate failed"


def failure_alert(context: dict):
    from ecdctr_pipeline.quality.alerts import Alert

    ti = context.get("ti") or context.get("task_instance")
    exc = context.get("exception")
    reason = " ".join(str(exc).split())[:500] if exc is not None else "unknown"
    dag_id = getattr(ti, "dag_id", None) or getattr(context.get("dag"), "dag_id", "?")
    task_id = getattr(ti, "task_id", "?")
    ds = context.get("ds") or str(context.get("logical_date", ""))[:10]
    kind = "sensor_timeout" if type(exc).__name__ == "AirflowSensorTimeout" else "task_failure"
    return Alert(kind=kind, subject=dag_id, logical_date=ds, summary=f"task {task_id} failed: {reason}",
                 details=[{"task_id": task_id, "exception": type(exc).__name__ if exc else None, "reason": reason}],
                 context={"run_id": context.get("run_id"), "try_number": getattr(ti, "try_number", None)})


def on_failure(context: dict) -> None:
    from ecdctr_pipeline.quality import alerts
    from ecdctr_pipeline.core.settings import load_settings

    exc = context.get("exception")
    if exc is not None and GATE_MARK in str(exc):
        return  # the gate sent its own alert with the failing checks
    try:
        alerts.send(load_settings().alerts, failure_alert(context))
    except Exception:  # noqa: BLE001 - a callback must never raise
        log.exception("could not send the failure alert")


def deadline_alert(context: dict, *, tier: str, hours: float):
    """The ``deadline_missed`` alert of a run (``context["dag_run"]``: Airflow's DAG run record),
    or None for a backfill run (a backfill queues many days at once: their queue time says nothing)."""
    from ecdctr_pipeline.quality.alerts import Alert

    run = (context or {}).get("dag_run") or {}
    if run.get("run_type") == "backfill":
        return None
    dag_id, run_id = run.get("dag_id", f"ecdctr_{tier}"), run.get("dag_run_id") or run.get("run_id")
    day = str(run.get("logical_date") or "")[:10]
    return Alert(kind="deadline_missed", subject=dag_id, logical_date=day,
                 summary=f"{dag_id} run {run_id} not finished {hours:g} h after it was queued "
                         f"(state {run.get('state')}; orchestration.actr_deadline_h)",
                 details=[{"run_id": run_id, "state": run.get("state"), "queued_at": run.get("queued_at"),
                           "deadline": (context.get("deadline") or {}).get("deadline_time")}],
                 context={"run_id": run_id})


async def deadline_missed(context: dict | None = None, tier: str = "actr", hours: float = 0.0, **_) -> None:
    """DeadlineAlert callback (run by the triggerer): one alert through the configured notifiers."""
    import asyncio

    from ecdctr_pipeline.core.settings import load_settings
    from ecdctr_pipeline.quality import alerts

    try:
        alert = deadline_alert(context or {}, tier=tier, hours=hours)
        if alert is None:
            log.info("deadline missed by a backfill run: not alerted")
            return
        await asyncio.to_thread(alerts.send, load_settings().alerts, alert)
    except Exception:  # noqa: BLE001 - a callback must never raise
        log.exception("could not send the deadline alert")
