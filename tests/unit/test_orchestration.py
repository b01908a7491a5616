"""Orchestration code without a scheduler: the sensors' check and trigger, in-process step and
branch execution, failure alerts, pod commands. (The DAGs under Airflow: tests/integration.)"""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest

from ecdctr_pipeline.core import paths
from ecdctr_pipeline.data import artifacts
from ecdctr_pipeline.data.store import open_store
from ecdctr_pipeline.orchestration import callbacks, commands
from ecdctr_pipeline.orchestration.triggers import StepTrigger, check


@pytest.fixture
def store(tmp_path, monkeypatch):
    """An empty file store that every ``ecdctr`` argv run in this test sees (as a pod would)."""
    from ecdctr_pipeline.core.settings import StoreSettings

    monkeypatch.setenv("ECDCTR_STORE", f"file://{tmp_path / 'store'}")
    monkeypatch.delenv("ECDCTR_CONFIG", raising=False)
    return open_store(StoreSettings(root=f"file://{tmp_path / 'store'}"))


def _publish_set(store, months):
    m = artifacts.Manifest(kind="tpm_embedding_set", artifact_id="2026-10", logical_date="2026-10-01", months=months)
    artifacts.publish(store, paths.tpm_set("2026-10"), {"user_2026-09.parquet": b"x"}, m)


def _publish_actr(store, blessed: bool):
    m = artifacts.Manifest(kind="actr_model", artifact_id="2026-11-24", logical_date="2026-11-24",
                           blessing=artifacts.Blessing(blessed=blessed, candidate_gauc=0.6, tolerance=0.002,
                                                       baseline=artifacts.Baseline(model="2026-11-23", gauc=0.7)))
    artifacts.publish(store, paths.actr_model("2026-11-24"), {"model.keras": b"x"}, m)


CHECK_SET = ["check", "embedding-set", "--as-of", "2026-11-23", "--json"]


def test_check_waits_then_is_ready(store):
    status, why = check(CHECK_SET)
    assert status == "waiting" and why.startswith("embedding set 2026-10 (months 2026-07, 2026-08, 2026-09)")
    _publish_set(store, ["2026-07", "2026-08", "2026-09"])
    status, result = check(CHECK_SET)
    assert status == "ready" and result["embedding_set"] == "2026-10" and result["months"][-1] == "2026-09"


def test_check_fails_at_once_on_what_waiting_cannot_fix(store):
    _publish_set(store, ["2026-08", "2026-09", "2026-10"])  # a month inside the CPM window
    status, why = check(CHECK_SET)
    assert status == "failed" and "not before the first training month 2026-10" in why


def test_trigger_serialises_and_times_out_naming_what_is_missing(store):
    past = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=1)).isoformat()
    trig = StepTrigger(CHECK_SET, poke_interval=0.01, deadline=past)
    path, kwargs = trig.serialize()
    assert path == "ecdctr_pipeline.orchestration.triggers.StepTrigger" and StepTrigger(**kwargs).argv == CHECK_SET

    async def first_event(t):
        async for ev in t.run():
            return ev.payload

    ev = asyncio.run(first_event(trig))
    assert ev["status"] == "timeout" and "embedding set 2026-10" in ev["message"]
    _publish_set(store, ["2026-07", "2026-08", "2026-09"])
    ev = asyncio.run(first_event(StepTrigger(CHECK_SET, poke_interval=0.01, deadline=past)))
    assert ev["status"] == "ready" and ev["result"]["embedding_set"] == "2026-10"


def test_run_step_retries_missing_inputs_and_fails_the_rest_at_once(store):
    from airflow.sdk.exceptions import AirflowFailException

    from ecdctr_pipeline.core.errors import ArtifactMissingError
    from ecdctr_pipeline.orchestration.airflow_support import run_branch, run_step

    with pytest.raises(ArtifactMissingError):  # may appear later: Airflow's retries apply
        run_step(["check", "blessed", "--as-of", "2026-11-24", "--json"])
    with pytest.raises(AirflowFailException, match="invalid command line"):
        run_step(["train", "gpu", "--as-of", "2026-11-24"])
    _publish_actr(store, blessed=False)
    with pytest.raises(AirflowFailException, match="exited 1"):  # rejected: `check blessed` exits 1
        run_step(["check", "blessed", "--as-of", "2026-11-24", "--json"])
    assert run_branch(["check", "blessed", "--as-of", "2026-11-24", "--json"], "blessed") is False
    _publish_actr(store, blessed=True)
    assert run_step(["check", "blessed", "--as-of", "2026-11-24", "--json"])["blessing"]["candidate_gauc"] == 0.6
    assert run_branch(["check", "blessed", "--as-of", "2026-11-24", "--json"], "blessed") is True


class _TI:
    dag_id, task_id, try_number = "ecdctr_actr_daily", "train_actr", 2


def test_failure_alerts_name_the_task_and_skip_gate_failures(monkeypatch):
    class AirflowSensorTimeout(Exception):
        pass

    ctx = {"ti": _TI(), "ds": "2026-11-24", "run_id": "r1", "exception": RuntimeError("disk\nfull")}
    a = callbacks.failure_alert(ctx)
    assert (a.kind, a.subject, a.logical_date) == ("task_failure", "ecdctr_actr_daily", "2026-11-24")
    assert a.summary == "task train_actr failed: disk full" and a.context == {"run_id": "r1", "try_number": 2}
    assert callbacks.failure_alert({**ctx, "exception": AirflowSensorTimeout("late")}).kind == "sensor_timeout"
    sent = []
    monkeypatch.setattr("ecdctr_pipeline.quality.alerts.send", lambda cfg, alert: sent.append(alert))
    callbacks.on_failure({**ctx, "exception": RuntimeError(f"{callbacks.GATE_MARK}: 3 checks")})
    assert sent == []  # the gate alerted with its failing checks already
    callbacks.on_failure(ctx)
    assert [x.kind for x in sent] == ["task_failure"]


def test_pod_commands_put_the_argv_behind_each_image_entrypoint():
    argv = ["extract", "tpm", "--as-of", "2026-10-01", "--json"]
    spark = commands.pod_command("spark", argv, spark_master="spark://m:7077")
    assert spark[:3] == ["spark-submit", "--master", "spark://m:7077"]
    assert spark[3].endswith("/spark_jobs/ecdctr_cli.py") and spark[4:] == argv
    for kind in ("trainer", "job"):
        assert commands.pod_command(kind, argv, spark_master="unused") == ["ecdctr", *argv]
    with pytest.raises(ValueError, match="sensor"):
        commands.pod_command("sensor", argv, spark_master="unused")


def test_an_unblessed_day_alerts_when_the_served_model_is_too_old(store, webhook_receiver):
    """``served_model_stale``: a day whose model is not blessed keeps the served one; when the served
    version's A-CTR day is more than ``alerts.max_served_age_days`` before the day, one alert."""
    import json

    from ecdctr_pipeline import tiers
    from ecdctr_pipeline.core.settings import Settings
    from ecdctr_pipeline.serving.pointer import SERVED_POINTER

    url, received = webhook_receiver
    settings = Settings.model_validate({"store": {"root": store.root}, "alerts": {
        "notifiers": ["webhook"], "webhook_url": f"{url}/hook", "max_served_age_days": 3}})
    tiers._alert_if_served_stale(settings, store, "actr", "2026-11-24")  # nothing served: nothing to say
    m = artifacts.Manifest(kind="serving_version", artifact_id="4", logical_date="2026-11-20",
                           inputs=artifacts.Inputs(actr_model="2026-11-20"))
    artifacts.publish(store, paths.serving_version(4), {"saved_model.pb": b"x"}, m)
    store.put_bytes(SERVED_POINTER, json.dumps({"version": 4, "history": []}).encode())
    tiers._alert_if_served_stale(settings, store, "actr", "2026-11-23")  # 3 days: within the limit
    assert received == []
    tiers._alert_if_served_stale(settings, store, "actr", "2026-11-24")
    assert [(a["kind"], a["logical_date"]) for a in received] == [("served_model_stale", "2026-11-24")]
    assert received[0]["details"][0] == {"served_version": 4, "served_actr_model": "2026-11-20", "age_days": 4,
                                         "max_served_age_days": 3}
    assert "is 4 days old on 2026-11-24, more than alerts.max_served_age_days 3" in received[0]["summary"]


def test_promote_blesses_a_rejected_model_with_an_audit_record(store, capsys):
    """``ecdctr promote``: a rejected day becomes blessed, its manifest records who, why, when and
    the gate's verdict (same files, same attempt); ``check blessed`` then passes; an already blessed
    model or an empty reason is refused in one line, changing nothing."""
    from ecdctr_pipeline.app.main import main

    _publish_actr(store, blessed=False)
    before = artifacts.read_manifest(store, paths.actr_model("2026-11-24"))
    assert main(["promote", "--as-of", "2026-11-24", "--by", "ops-oncall", "--reason", " "]) == 2
    assert "must not be empty" in capsys.readouterr().err
    assert main(["promote", "--as-of", "2026-11-24", "--by", "ops-oncall", "--reason", "the holdout day was an outage",
                 "--json"]) == 0
    capsys.readouterr()
    m = artifacts.read_manifest(store, paths.actr_model("2026-11-24"))
    assert m.blessed and (m.attempt, m.files) == (before.attempt, before.files)
    p = m.blessing.promoted
    assert (p["by"], p["reason"]) == ("ops-oncall", "the holdout day was an outage") and p["at"]
    assert p["verdict"] == before.blessing.describe() and p["verdict"].startswith("REJECTED: GAUC 0.6")
    assert m.blessing.describe().startswith("PROMOTED by ops-oncall at ")
    assert main(["check", "blessed", "--as-of", "2026-11-24"]) == 0
    capsys.readouterr()
    assert main(["promote", "--as-of", "2026-11-24", "--by", "x", "--reason", "again"]) == 2
    err = capsys.readouterr().err
    assert "is already blessed (PROMOTED by ops-oncall" in err and len(err.strip().splitlines()) == 1
    assert artifacts.read_manifest(store, paths.actr_model("2026-11-24")).blessing.promoted["reason"] == \
        "the holdout day was an outage"


def test_a_missed_deadline_alerts_once_unless_the_run_is_a_backfill(webhook_receiver, monkeypatch):
    """The DeadlineAlert callback (what the triggerer awaits): one ``deadline_missed`` alert naming
    the run; a backfill run's missed deadline is logged, not alerted."""
    from ecdctr_pipeline.orchestration.callbacks import deadline_missed

    url, received = webhook_receiver
    monkeypatch.setenv("ECDCTR_ALERTS__NOTIFIERS", "[webhook]")
    monkeypatch.setenv("ECDCTR_ALERTS__WEBHOOK_URL", f"{url}/hook")
    run = {"dag_id": "ecdctr_actr_daily", "dag_run_id": "scheduled__2026-11-25T00:00:00+00:00",
           "logical_date": "2026-11-25T00:00:00Z", "state": "running", "run_type": "scheduled"}
    ctx = {"dag_run": run, "deadline": {"deadline_time": "2026-11-25T20:00:00Z"}}
    asyncio.run(deadline_missed(context={**ctx, "dag_run": {**run, "run_type": "backfill"}}, tier="actr", hours=20))
    assert received == []
    asyncio.run(deadline_missed(context=ctx, tier="actr", hours=20))
    assert [(a["kind"], a["subject"], a["logical_date"]) for a in received] == [
        ("deadline_missed", "ecdctr_actr_daily", "2026-11-25")]
    assert "run scheduled__2026-11-25T00:00:00+00:00 not finished 20 h after it was queued (state running" in \
        received[0]["summary"]
