"""``sensor_held``: the check the scheduler test and ``make e2e`` make of the calendar sensors."""

import datetime as dt

from ecdctr_pipeline.orchestration.local_airflow import TaskState, sensor_held

T0 = dt.datetime(2026, 12, 7, 3, 40, tzinfo=dt.timezone.utc)


def _task(name: str, start_s: float) -> TaskState:
    return TaskState(name, "success", T0 + dt.timedelta(seconds=start_s), None, 1)


def test_held_when_the_sensor_waited_and_the_step_started_after_the_publish():
    # CI's run: the guarded step began 1 s before Airflow recorded the upstream task's end, but after the publish
    published = (T0 + dt.timedelta(seconds=165)).isoformat(timespec="seconds")
    assert sensor_held(_task("wait", 0), _task("train", 165.5), published)


def test_not_held_when_the_step_started_before_the_publish_or_the_sensor_came_late():
    published = (T0 + dt.timedelta(seconds=165)).isoformat(timespec="seconds")
    assert not sensor_held(_task("wait", 0), _task("train", 100), published)  # did not wait
    assert not sensor_held(_task("wait", 170), _task("train", 171), published)  # never saw it missing
    assert not sensor_held(_task("wait", 0), TaskState("train", None, None, None, 0), published)  # never ran
    assert not sensor_held(_task("wait", 0), _task("train", 200), "FileNotFoundError: no manifest")
