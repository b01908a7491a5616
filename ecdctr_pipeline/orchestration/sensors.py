"""Sensors (reschedule mode by default; poke interval and timeout from settings). They read
manifests through the artifact store, so an artifact still being written is invisible."""

from __future__ import annotations

import datetime as dt

from airflow.sdk import BaseSensorOperator, PokeReturnValue

from airflow.sdk.exceptions import AirflowFailException, AirflowSensorTimeout


class _NamedTimeoutSensor(BaseSensorOperator):
    """A sensor whose timeout message names what it waited for."""

    def describe_missing(self, context) -> str:  # pragma: no cover - overridden
        return "upstream artifact"

    def execute(self, context):
        try:
            return super().execute(context)
        except AirflowSensorTimeout as exc:
            raise AirflowSensorTimeout(f"timed out after {self.timeout:.0f} s: {self.describe_missing(context)}") from exc


class EmbeddingSetSensor(_NamedTimeoutSensor):
    """CPM: waits for embedding set ``month(W-28d)``; an overlapping set fails at once."""

    def poke(self, context):
        from ..errors import OverlapError
        from . import tasks

        try:
            found = tasks.embedding_set_ready(context["ds"])
        except OverlapError as exc:
            raise AirflowFailException(str(exc)) from None
        if found is None:
            self.log.info("waiting: %s", tasks.describe_missing_set(context["ds"]))
            return False
        return PokeReturnValue(is_done=True, xcom_value=found)

    def describe_missing(self, context) -> str:
        from . import tasks

        return tasks.describe_missing_set(context["ds"])


class CPMCheckpointSensor(_NamedTimeoutSensor):
    """A-CTR: waits for the CPM checkpoint of the latest Monday <= D (that day's on a Monday);
    after ``actr.cpm_wait_timeout_s`` it accepts the previous one if the staleness policy allows."""

    def poke(self, context):
        from . import tasks

        due = context.get("data_interval_end") or context["logical_date"]
        waited = tasks.waited_since(due, dt.datetime.now(dt.timezone.utc))
        found = tasks.cpm_checkpoint_ready(context["ds"], waited)
        if found is None:
            self.log.info("waiting (%.0f s): %s", waited, tasks.describe_missing_cpm(context["ds"]))
            return False
        return PokeReturnValue(is_done=True, xcom_value=found)

    def describe_missing(self, context) -> str:
        from . import tasks

        return tasks.describe_missing_cpm(context["ds"])
