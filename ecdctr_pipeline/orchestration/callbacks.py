"""Airflow callbacks: every task failure (sensor timeouts included) sends one alert through the
configured notifiers, naming DAG, logical date, task and reason. Quality-gate failures have
already alerted with their checks and are not alerted twice."""

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
