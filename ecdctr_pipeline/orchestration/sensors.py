"""The sensor a ``sensor`` step (:mod:`steps`) renders to: it repeats the step's readiness check
(``ecdctr check ...``) until it passes, and pushes the check's JSON result as XCom (for the CPM,
the checkpoint the trainer then gets as ``--cpm``). ``orchestration.sensor_mode``:

- ``deferrable`` (default): one check in the worker, then the wait is handed to the triggerer
  (:class:`~.triggers.StepTrigger`), so no worker slot is held while waiting;
- ``reschedule``: the worker slot is released between pokes;
- ``poke``: the worker waits (short waits, tests).

In every mode a timeout fails the task with a message naming what is missing, and a check that
waiting cannot fix (months that overlap the training window) fails it at once.
"""

from __future__ import annotations

import datetime as dt

from airflow.sdk import BaseSensorOperator, PokeReturnValue
from airflow.sdk.exceptions import AirflowFailException, AirflowSensorTimeout

from ecdctr_pipeline.orchestration.triggers import StepTrigger, check


class StepSensor(BaseSensorOperator):
    template_fields = ("argv",)
    ui_color = "#e8f0fe"

    def __init__(self, *, argv: list[str], mode: str = "deferrable", **kwargs):
        self.deferrable = mode == "deferrable"
        super().__init__(mode="poke" if self.deferrable else mode, **kwargs)
        self.argv = list(argv)

    def _check(self):
        status, payload = check(self.argv)
        if status == "failed":
            raise AirflowFailException(payload)
        return status, payload

    def poke(self, context):
        status, payload = self._check()
        if status == "waiting":
            self.log.info("waiting: %s", payload)
            return False
        return PokeReturnValue(is_done=True, xcom_value=payload)

    def _timed_out(self, missing: str):
        return AirflowSensorTimeout(f"timed out after {self.timeout:.0f} s: {missing}")

    def execute(self, context):
        if not self.deferrable:
            try:
                return super().execute(context)
            except AirflowSensorTimeout:
                status, payload = self._check()
                raise self._timed_out(payload if status == "waiting" else "the check passed too late") from None
        status, payload = self._check()
        if status == "ready":
            return payload
        self.log.info("deferring to the triggerer: %s", payload)
        deadline = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=self.timeout)
        self.defer(trigger=StepTrigger(argv=self.argv, poke_interval=self.poke_interval, deadline=deadline.isoformat()),
                   method_name="execute_complete",
                   timeout=dt.timedelta(seconds=self.timeout + 2 * self.poke_interval + 60))

    def execute_complete(self, context, event: dict):
        if event["status"] == "ready":
            return event["result"]
        if event["status"] == "failed":
            raise AirflowFailException(event["message"])
        raise self._timed_out(event["message"])
