"""The DAGs under a real Airflow 3 deployment on 127.0.0.1: scheduler, DAG processor, triggerer and
API server as separate processes (LocalExecutor, SQLite, a private AIRFLOW_HOME), the store on the
loopback S3 server, driven as an operator drives them — Airflow's REST API and ``airflow backfill
create`` — then ``ecdctr backfill`` over the same range, and a failing gate.

The CPM and the A-CTR day are submitted first and must be waiting at their sensors (deferred to the
triggerer) before TPM is triggered — a barrier, so the sensors' hold is exercised on every run: only
they keep the CPM back until TPM has published its set, and the A-CTR day until its CPM exists.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from pathlib import Path

import pyarrow as pa
import pytest
import yaml

from ecdctr_pipeline.data import artifacts, delta
from ecdctr_pipeline.core import paths
from ecdctr_pipeline.orchestration.local_airflow import SENSOR_WAITING, sensor_held
from ecdctr_pipeline.orchestration.steps import DAG_IDS, TIERS
from ecdctr_pipeline.serving.pointer import read_served
from ecdctr_pipeline.data.store import open_store

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOT = ROOT / "reports" / "demo" / "airflow_actr_grid.png"
TPM, CPM, ACTR = DAG_IDS["tpm"], DAG_IDS["cpm"], DAG_IDS["actr"]
# one A-CTR day: a second one costs ~100 s of task start-up (TensorFlow imports) and shows only
# Airflow's max_active_runs, which test_dags and the backfill request below check as configuration
DAYS = ["2026-11-25"]


def _config(path: Path, st, webhook: str) -> Path:
    cfg = {
        "store": {"root": st.root, "endpoint_url": st.endpoint_url, "region": st.region, "allow_http": True,
                  "access_key_id": "testing", "secret_access_key": "testing"},
        # DuckDB features: the Spark path of the same step argv is proven on a cluster (test_spark_cluster)
        "features": {"engine": "duckdb", "max_seq_len": 10,
                     "hash_buckets": {"user_id": 400, "item_id": 300, "category_id": 16, "item_brand": 50}},
        "calendar": {"tpm_train_months": 3},  # the three snapshot months, no more
        "tpm": {"batch_size": 1024, "hidden_units": [16]},
        "cpm": {"hidden_units": [32, 16], "batch_size": 512, "epochs": 1, "attention_units": [8]},
        # blessing is not what these tests are about (unit tests cover the gate, and a day's GAUC on
        # the tiny log swings by more than the default tolerance): every model passes, so the
        # export runs on each day and the served version is the last day's
        "actr": {"batch_size": 256, "epochs": 1, "bless_tolerance": 1.0, "min_gauc": 0.0},
        # the evaluate step runs, but skips the Target-only comparison (tested with the trainers)
        "orchestration": {"retries": 0, "sensor_mode": "deferrable", "sensor_poke_interval_s": 1,
                          "sensor_timeout_s": 1200, "compare_target_only": False},
        "alerts": {"notifiers": ["log", "webhook"], "webhook_url": webhook},
    }
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture(scope="module")
def deployment(s3_endpoint, tmp_path_factory, webhook_receiver_module):
    from ecdctr_pipeline.orchestration.local_airflow import LocalAirflow
    from ecdctr_pipeline.core.settings import load_settings
    from ecdctr_pipeline.data.simulate import simulate
    from tests.conftest import new_bucket

    base, received = webhook_receiver_module
    tmp = tmp_path_factory.mktemp("scheduler")
    st = new_bucket(s3_endpoint)
    cfg = _config(tmp / "config.yaml", st, f"{base}/hook")
    settings = load_settings(cfg)
    env = {"ECDCTR_CONFIG": str(cfg), "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "AWS_REGION": "us-east-1", "TF_CPP_MIN_LOG_LEVEL": "2"}
    # the data is simulated while Airflow starts (nothing runs before the test unpauses the DAGs)
    failed: list[BaseException] = []

    def _simulate():
        try:
            simulate(open_store(settings.store), dt.date(2026, 7, 1), dt.date(2026, 11, 24), "tiny", seed=3,
                     progress=False)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the fixture
            failed.append(exc)

    sim = threading.Thread(target=_simulate)
    t0 = time.perf_counter()
    sim.start()
    # the scheduler creates no runs from the schedules (the clock is not the test's calendar):
    # every run is one the test asks for
    with LocalAirflow(tmp / "airflow", env=env, parallelism=2, use_job_schedule=False) as af:
        sim.join()
        if failed:
            raise failed[0]
        af.started_s = time.perf_counter() - t0
        yield af, settings, cfg, received


def _json_list(out: str) -> list:
    """The JSON list ``ecdctr backfill --json`` printed (progress and log lines may surround it)."""
    import re

    start = re.search(r"^\[$", out, re.M)
    assert start, out[-2000:]
    return json.JSONDecoder().raw_decode(out[start.start():])[0]


def _progress(prefix: str):
    last = [None]

    def show(states):
        if states != last[0]:
            print(f"{prefix} {states}", flush=True)
            last[0] = states
    return show


def test_scheduler_runs_the_calendar_in_dependency_order(deployment):
    af, settings, cfg, received = deployment
    store = open_store(settings.store)
    t0 = time.perf_counter()
    af.wait_for_dags([TPM, CPM, ACTR])
    for d in (TPM, CPM, ACTR):
        assert af.unpause(d)["is_paused"] is False
    # three ways an operator starts runs: a REST trigger, the CLI backfill, a REST backfill. Downstream first,
    # held at their sensors (a barrier) before TPM starts, so the sensors' hold is exercised every run
    r = af.backfill_cli(CPM, "2026-11-23", "2026-11-23")
    assert r.returncode == 0, r.stderr[-2000:]
    bf = af.backfill(ACTR, DAYS[0], DAYS[-1])
    assert bf["dag_id"] == ACTR and bf["max_active_runs"] == 1
    af.wait_task(CPM, "wait_for_embedding_set", SENSOR_WAITING, timeout_s=600)
    af.wait_task(ACTR, "wait_for_cpm", SENSOR_WAITING, timeout_s=600)
    af.trigger(TPM, "2026-10-01")
    runs = af.wait_runs({TPM: 1, CPM: 1, ACTR: len(DAYS)}, timeout_s=1200, progress=_progress("runs:"))
    took = time.perf_counter() - t0
    print(f"scheduler-driven TPM -> CPM -> A-CTR x{len(DAYS)}: {took:.0f} s (Airflow start {af.started_s:.0f} s)")

    states = {d: [(r["logical_date"][:10], r["state"]) for r in rs] for d, rs in runs.items()}
    assert states == {TPM: [("2026-10-01", "success")], CPM: [("2026-11-23", "success")],
                      ACTR: [(d, "success") for d in DAYS]}, states
    ti = {(d, r["logical_date"][:10]): af.task_states(d, r["dag_run_id"]) for d, rs in runs.items() for r in rs}
    for (d, day), tasks in ti.items():
        assert [s.name for s in TIERS[{v: k for k, v in DAG_IDS.items()}[d]].steps] == sorted(
            tasks, key=lambda t: tasks[t].start), f"{d} {day}: tasks ran out of order"
        assert all(t.state == "success" for t in tasks.values()), (d, day, {k: t.state for k, t in tasks.items()})
    cpm = ti[(CPM, "2026-11-23")]
    a1 = ti[(ACTR, DAYS[0])]
    # the sensors held the downstream tiers: each waited until its upstream published
    tpm_at = artifacts.read_manifest(store, paths.tpm_set("2026-10")).created_at
    cpm_at = artifacts.read_manifest(store, paths.cpm_checkpoint("2026-11-23")).created_at
    assert sensor_held(cpm["wait_for_embedding_set"], cpm["train_cpm"], tpm_at), (cpm, tpm_at)
    assert sensor_held(a1["wait_for_cpm"], a1["train_actr"], cpm_at), (a1, cpm_at)
    # ... in the triggerer (deferred), not by holding a worker slot
    log = (af.home / "logs" / f"dag_id={CPM}").rglob("task_id=wait_for_embedding_set/*.log")
    text = "".join(p.read_text(errors="replace") for p in log)
    assert "deferring to the triggerer" in text and "embedding set 2026-10" in text

    # the CPM the sensor chose reached the trainer and is in the manifest
    run_ids = {(d, r["logical_date"][:10]): r["dag_run_id"] for d, rs in runs.items() for r in rs}
    for day in DAYS:
        m = artifacts.read_manifest(store, paths.actr_model(day))
        assert m.run_id == run_ids[(ACTR, day)]  # the model names the DAG run that trained it
        assert m.inputs.cpm_checkpoint == "2026-11-23"
        assert m.extra["cpm_choice"] == {"checkpoint": "2026-11-23", "fallback": False,
                                         "chosen_by": "--cpm (the wait_for_cpm sensor)"}
    served = read_served(store)["version"]
    sv = artifacts.read_manifest(store, paths.serving_version(served))
    assert (sv.inputs.actr_model, sv.inputs.cpm_checkpoint, sv.inputs.embedding_set) == (DAYS[-1], "2026-11-23", "2026-10")
    assert sv.run_id == run_ids[(ACTR, DAYS[-1])]
    assert artifacts.read_manifest(store, paths.cpm_checkpoint("2026-11-23")).run_id == run_ids[(CPM, "2026-11-23")]
    assert received == []  # nothing failed, nothing was late: no alert

    shot = af.screenshot(f"/dags/{ACTR}", SCREENSHOT)
    assert shot.stat().st_size > 20_000  # a rendered page, not an empty canvas


def test_ecdctr_backfill_renders_the_same_steps(deployment, capsys):
    """After the scheduler's pass, ``ecdctr backfill`` over the same range runs every step and each
    finds its work done (nothing rerun: "up to date"); with ``serving/`` removed it repairs exactly
    that (re-exports, serves); ``--dry-run`` prints the argv and runs nothing; forced, it runs
    every A-CTR step's argv in-process and serves a new version."""
    from ecdctr_pipeline.app.main import main

    af, settings, cfg, _ = deployment
    store = open_store(settings.store)
    before = {p: m.attempt for p, m in artifacts.list_artifacts(store)}
    span = ["--config", str(cfg), "backfill", "--from", DAYS[0], "--to", DAYS[-1], "--tiers", "actr"]
    assert main([*span, "--json"]) == 0
    rows = _json_list(capsys.readouterr().out)
    assert [(r["tier"], r["logical_date"], r["status"]) for r in rows] == [("actr", d, "up to date") for d in DAYS]
    assert rows[-1]["steps"] == [s.name for s in TIERS["actr"].steps]
    after = {p: m.attempt for p, m in artifacts.list_artifacts(store)}
    assert after == before

    # a store that lost its serving versions: the backfill re-exports the last day, nothing else
    served_day = read_served(store)
    assert store.delete_prefix("serving/") > 0 and read_served(store).get("version") is None
    assert main([*span, "--dry-run", "--json"]) == 0  # the plan: nothing runs
    plan = _json_list(capsys.readouterr().out)
    assert [r["status"] for r in plan] == ["planned"] * len(DAYS) and read_served(store).get("version") is None
    assert plan[-1]["results"]["train_actr"].endswith(
        f"train actr --as-of {DAYS[-1]} --cpm <wait_for_cpm.cpm_checkpoint> --json --no-force --config {cfg}")
    assert main([*span, "--json"]) == 0
    rows = _json_list(capsys.readouterr().out)
    assert [r["status"] for r in rows] == ["done"] * len(DAYS), rows
    assert rows[-1]["results"]["train_actr"]["skipped"] and not rows[-1]["results"]["export_serving"]["skipped"]
    sv = artifacts.read_manifest(store, paths.serving_version(read_served(store)["version"]))
    assert sv.inputs.actr_model == DAYS[-1] and served_day["version"] is not None
    assert {p: m.attempt for p, m in artifacts.list_artifacts(store) if not p.startswith("serving/")} == {
        p: a for p, a in before.items() if not p.startswith("serving/")}

    served = read_served(store)["version"]
    old = artifacts.read_manifest(store, paths.actr_model(DAYS[-1]))
    assert main(["--config", str(cfg), "backfill", "--from", DAYS[-1], "--to", DAYS[-1], "--tiers", "actr",
                 "--force", "--json"]) == 0
    rows = _json_list(capsys.readouterr().out)
    assert [(r["tier"], r["logical_date"], r["status"]) for r in rows] == [("actr", DAYS[-1], "done")]
    assert rows[0]["steps"] == [s.name for s in TIERS["actr"].steps]
    new = artifacts.read_manifest(store, paths.actr_model(DAYS[-1]))
    assert new.attempt != old.attempt and new.extra["cpm_choice"]["chosen_by"] == "--cpm (the wait_for_cpm sensor)"
    assert new.run_id.startswith(f"ecdctr_backfill__actr__{DAYS[-1]}__") and new.run_id != old.run_id
    assert set(store.iter_children(paths.actr_model(DAYS[-1]))) == {new.attempt, "MANIFEST.json"}
    assert read_served(store)["version"] == served + 1


def test_failing_gate_fails_the_cleared_run_with_one_alert(deployment):
    af, settings, cfg, received = deployment
    store = open_store(settings.store)
    served = read_served(store)
    model = artifacts.read_manifest(store, paths.actr_model(DAYS[-1])).attempt
    # the ad log of 2026-11-24 (the holdout of A-CTR 2026-11-25) turns bad; ops clears that day
    day, _ = delta.read(store, "raw/ad", partitions=["2026-11-24"])
    bad = day.set_column(day.schema.get_field_index("click"), "click", pa.array([2] * day.num_rows, pa.int8()))
    delta.write(store, "raw/ad", bad)
    run = next(r for r in af.runs(ACTR) if r["logical_date"].startswith(DAYS[-1]))
    af.clear(ACTR, run["dag_run_id"])
    deadline = time.monotonic() + 600
    while True:
        state = next(r for r in af.runs(ACTR) if r["dag_run_id"] == run["dag_run_id"])["state"]
        if state == "failed" or time.monotonic() > deadline:
            break
        time.sleep(1)
    tasks = af.task_states(ACTR, run["dag_run_id"])
    assert state == "failed" and tasks["quality_gate"].state == "failed", {k: t.state for k, t in tasks.items()}
    assert tasks["train_actr"].state == "upstream_failed" and tasks["export_serving"].state == "upstream_failed"
    assert len(received) == 1, received  # the gate's own alert; the failure callback does not repeat it
    a = received[0]
    assert (a["kind"], a["subject"], a["logical_date"]) == ("quality_gate", "raw/ad", DAYS[-1])
    assert {d["label"] for d in a["details"]} >= {"click in {0,1}"} and a["context"]["dag_id"] == ACTR
    # nothing published by the failed run
    assert read_served(store) == served
    assert artifacts.read_manifest(store, paths.actr_model(DAYS[-1])).attempt == model
