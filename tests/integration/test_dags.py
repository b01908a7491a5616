"""The three DAGs: integrity, sensors, an end-to-end dag.test() pass on the loopback S3 store,
idempotent re-runs, and a failing gate. Airflow runs on a private SQLite AIRFLOW_HOME."""

from __future__ import annotations

import datetime as dt
import json
import re
import shutil
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pyarrow as pa
import pytest
import yaml

from ecdctr_pipeline import artifacts, delta, paths
from ecdctr_pipeline.store import open_store

pytestmark = pytest.mark.integration

MODEL = {"features": {"max_seq_len": 10, "hash_buckets": {"user_id": 400, "item_id": 300, "category_id": 16,
                                                           "item_brand": 50}},
         "tpm": {"batch_size": 1024, "hidden_units": [16]},
         "cpm": {"hidden_units": [32, 16], "batch_size": 512, "epochs": 1, "attention_units": [8]},
         "actr": {"batch_size": 256, "epochs": 1},
         "spark": {"master": "local[2]", "shuffle_partitions": 2}}


@pytest.fixture(scope="module")
def airflow_db():
    airflow = Path(sys.executable).with_name("airflow")
    r = subprocess.run([str(airflow), "db", "migrate"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]


@pytest.fixture
def bag(airflow_db):
    """Parses the DAGs when first used, i.e. after the test has set ECDCTR_CONFIG: retries,
    sensor modes and timeouts are read from the settings at parse time, as in production."""

    class LazyBag:
        _bag = None

        def get(self):
            from ecdctr_pipeline.orchestration import runner

            if self._bag is None:
                self._bag = runner.load_dags()
            return self._bag

    return LazyBag()


def write_config(path: Path, store: dict, **over) -> Path:
    cfg = {**MODEL, "store": store, "orchestration": {"retries": 0, "sensor_poke_interval_s": 1,
                                                      "sensor_timeout_s": 3, "sensor_mode": "poke"}}
    for k, v in over.items():
        cfg[k] = {**cfg.get(k, {}), **v}
    path.write_text(yaml.safe_dump(cfg))
    return path


def run(bag, tier, day):
    from ecdctr_pipeline.orchestration import runner

    return runner.run_dag(bag.get(), tier, dt.date.fromisoformat(day))


# ------------------------------------------------------------------ integrity
def test_dagbag_integrity_and_parse_time(airflow_db):
    from airflow.dag_processing.dagbag import DagBag

    from ecdctr_pipeline.orchestration.runner import DAGS_FOLDER

    bag = DagBag(dag_folder=str(DAGS_FOLDER))
    assert bag.import_errors == {}
    assert {s.file.rsplit("/", 1)[-1]: s.duration.total_seconds() < 2 for s in bag.dagbag_stats} == {
        "ecdctr_actr_daily.py": True, "ecdctr_cpm_weekly.py": True, "ecdctr_tpm_monthly.py": True}
    want = {
        "ecdctr_tpm_monthly": ("0 0 1 * *", {"extract_tpm_features": {"quality_gate"}, "quality_gate": {"train_tpm"},
                                             "train_tpm": set()}),
        "ecdctr_cpm_weekly": ("0 0 * * 1", {"extract_natural_features": {"quality_gate"},
                                            "quality_gate": {"wait_for_embedding_set"},
                                            "wait_for_embedding_set": {"train_cpm"}, "train_cpm": {"evaluate_cpm"},
                                            "evaluate_cpm": set()}),
        "ecdctr_actr_daily": ("0 0 * * *", {"extract_ad_features": {"quality_gate"}, "quality_gate": {"wait_for_cpm"},
                                            "wait_for_cpm": {"train_actr"}, "train_actr": {"evaluate"},
                                            "evaluate": {"bless"}, "bless": {"export_serving"},
                                            "export_serving": set()}),
    }
    for dag_id, (cron, graph) in want.items():
        dag = bag.get_dag(dag_id)
        assert dag.schedule == cron
        assert "ecdctr" in dag.tags and dag.max_active_runs == 1
        assert {t.task_id: set(t.downstream_task_ids) for t in dag.tasks} == graph
        for t in dag.tasks:
            assert t.owner == "ml-platform" and t.on_failure_callback
    # DAG files import nothing heavy at parse time
    code = ("import sys; from airflow.dag_processing.dagbag import DagBag; DagBag(dag_folder=%r); "
            "print(sorted(m for m in ('tensorflow','pyspark','great_expectations','keras','deltalake') if m in sys.modules))"
            % str(DAGS_FOLDER))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip().splitlines()[-1]
    assert out == "[]"


def test_kubernetes_mode_builds_gpu_pods(airflow_db, monkeypatch):
    from airflow.dag_processing.dagbag import DagBag

    from ecdctr_pipeline.orchestration.runner import DAGS_FOLDER

    monkeypatch.setenv("ECDCTR_ORCHESTRATION__EXECUTION", "kubernetes")
    bag = DagBag(dag_folder=str(DAGS_FOLDER))
    assert bag.import_errors == {}
    op = bag.get_dag("ecdctr_actr_daily").get_task("train_actr")
    assert type(op).__name__ == "KubernetesPodOperator"
    assert op.cmds == ["ecdctr"] and op.arguments == ["train", "actr", "--as-of", "{{ ds }}", "--json"]
    pod = op.full_pod_spec
    c = pod.spec.containers[0]
    assert c.image == "ecdctr/trainer:0.1.0" and c.resources.limits["nvidia.com/gpu"] == "1"
    assert pod.spec.service_account_name == "ecdctr" and pod.spec.node_selector == {"nvidia.com/gpu.present": "true"}
    assert pod.spec.tolerations[0].key == "nvidia.com/gpu"
    assert {e.name: e.value for e in c.env}["ECDCTR_CONFIG"] == "/etc/ecdctr/config.yaml"
    spark = bag.get_dag("ecdctr_actr_daily").get_task("extract_ad_features")
    assert spark.cmds == ["spark-submit"] and spark.arguments[-4:] == ["--domain", "ad", "--as-of", "{{ ds }}"]
    assert "nvidia.com/gpu" not in (spark.full_pod_spec.spec.containers[0].resources.limits or {})


def test_kubernetes_mode_every_pod_runs_a_real_command(airflow_db, monkeypatch):
    """What a pod runs is a command the CLI (or spark-submit) accepts, never the image default."""
    from airflow.dag_processing.dagbag import DagBag

    from ecdctr_pipeline.cli import build_parser
    from ecdctr_pipeline.orchestration.runner import DAGS_FOLDER

    monkeypatch.setenv("ECDCTR_ORCHESTRATION__EXECUTION", "kubernetes")
    bag = DagBag(dag_folder=str(DAGS_FOLDER))
    pods = 0
    for dag_id in ("ecdctr_tpm_monthly", "ecdctr_cpm_weekly", "ecdctr_actr_daily"):
        for op in bag.get_dag(dag_id).tasks:
            if type(op).__name__ != "KubernetesPodOperator":
                continue
            pods += 1
            argv = [a.replace("{{ ds }}", "2026-11-23") for a in op.arguments]
            assert op.cmds in (["ecdctr"], ["spark-submit"]), f"{dag_id}.{op.task_id}: {op.cmds}"
            if op.cmds == ["ecdctr"]:
                args = build_parser().parse_args(argv)  # SystemExit on an argv the CLI rejects
                assert callable(args.func), f"{dag_id}.{op.task_id}"
            else:
                job = next(a for a in argv if a.endswith(".py"))
                assert (DAGS_FOLDER.parent / "spark_jobs" / job.rsplit("/", 1)[1]).is_file()
            assert op.full_pod_spec.spec.containers[0].image in ("ecdctr/trainer:0.1.0", "ecdctr/spark:0.1.0")
    assert pods >= 12
    gate = bag.get_dag("ecdctr_cpm_weekly").get_task("quality_gate")
    assert gate.arguments == ["gate", "cpm", "--as-of", "{{ ds }}", "--json"]
    assert "nvidia.com/gpu" not in (gate.full_pod_spec.spec.containers[0].resources.limits or {})
    ev = bag.get_dag("ecdctr_cpm_weekly").get_task("evaluate_cpm")
    assert ev.arguments == ["evaluate", "--tier", "cpm", "--as-of", "{{ ds }}", "--json"]


def test_gate_and_cpm_evaluation_commands_run_in_process(tiny_env, capsys):
    """The argv the gate and evaluate_cpm pods run, through the CLI entry point on the tiny store."""
    from ecdctr_pipeline.cli import main
    from ecdctr_pipeline.orchestration import commands

    tiny_env()
    assert main(commands.gate_command("actr", "2026-11-24")[1:]) == 0
    printed = capsys.readouterr().out  # Airflow's and GX's log lines may precede the JSON
    out = json.loads(printed[re.search(r"^\{$", printed, re.M).start():])
    assert out["tables"] == ["raw/ad", "features/complete/ad"] and out["days"] == ["2026-11-23"] and out["checks"] > 0
    # no CPM checkpoint in the tiny store: one line naming the missing artifact, non-zero
    assert main(commands.evaluate_command("2026-11-23", "cpm")[1:]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("ecdctr: error: ") and "cpm/checkpoints/W=2026-11-23" in err[0]


# ------------------------------------------------------------------ sensors (tiny data, DuckDB engine)
@pytest.fixture
def tiny_env(tiny_pipeline_store, tmp_path, monkeypatch):
    dest = tmp_path / "store"
    shutil.copytree(tiny_pipeline_store, dest)

    def configure(**over):
        cfg = write_config(tmp_path / "config.yaml", {"root": f"file://{dest}"}, features={"engine": "duckdb"}, **over)
        monkeypatch.setenv("ECDCTR_CONFIG", str(cfg))
        from ecdctr_pipeline.settings import load_settings

        return load_settings()

    return configure


def test_cpm_sensor_fails_at_once_on_overlap(bag, tiny_env, caplog):
    from ecdctr_pipeline import training

    s = tiny_env()
    training.train_tpm(s, "2026-10")
    store = open_store(s.store)
    prefix = paths.tpm_set("2026-10")
    m = artifacts.read_manifest(store, prefix)
    store.put_bytes(paths.manifest_key(prefix), m.model_copy(update={"months": ["2026-08", "2026-09", "2026-10"]}).to_json())
    t0 = time.perf_counter()
    o = run(bag, "cpm", "2026-11-23")
    assert o.state == "failed" and o.task_states["wait_for_embedding_set"] == "failed"
    assert o.task_states.get("train_cpm") in ("upstream_failed", None)
    assert artifacts.find_manifest(store, paths.cpm_checkpoint("2026-11-23")) is None
    assert time.perf_counter() - t0 < 60  # it failed, it did not wait out a timeout
    # the failure alert (log notifier) names the months
    assert "task wait_for_embedding_set failed: CPM 2026-11-23: embedding set 2026-10 months 2026-10 are not " \
           "before the first training month 2026-10" in caplog.text


def test_cpm_sensor_times_out_naming_the_set(bag, tiny_env, caplog):
    tiny_env()
    o = run(bag, "cpm", "2026-11-23")
    assert o.state == "failed" and o.task_states["wait_for_embedding_set"] == "failed"
    assert "sensor_timeout ecdctr_cpm_weekly 2026-11-23" in caplog.text
    assert "timed out after 3 s: embedding set 2026-10 (months 2026-07, 2026-08, 2026-09)" in caplog.text


def test_actr_on_monday_waits_for_that_mondays_cpm(tiny_env):
    """The previous week's checkpoint exists, yet the Monday run waits for its own Monday's CPM
    until ``actr.cpm_wait_timeout_s``; only then does the staleness fallback apply (with an alert)."""
    from ecdctr_pipeline.orchestration import tasks

    s = tiny_env(actr={"cpm_wait_timeout_s": 3600})
    store = open_store(s.store)
    prev = artifacts.Manifest(kind="cpm_checkpoint", artifact_id="2026-11-16", logical_date="2026-11-16")
    artifacts.publish(store, paths.cpm_checkpoint("2026-11-16"), {"model.keras": b"x"}, prev)
    assert tasks.cpm_checkpoint_ready("2026-11-23", waited_s=60) is None
    assert "CPM checkpoint W=2026-11-23" in tasks.describe_missing_cpm("2026-11-23")
    assert tasks.cpm_checkpoint_ready("2026-11-23", waited_s=3600) == {"cpm_checkpoint": "2026-11-16", "fallback": True}
    assert tasks.cpm_checkpoint_ready("2026-11-25", waited_s=10**6) is None  # Wednesday: W-7 is too stale
    artifacts.publish(store, paths.cpm_checkpoint("2026-11-23"), {"model.keras": b"y"},
                      prev.model_copy(update={"artifact_id": "2026-11-23", "logical_date": "2026-11-23"}))
    assert tasks.cpm_checkpoint_ready("2026-11-23", waited_s=0) == {"cpm_checkpoint": "2026-11-23", "fallback": False}


def test_actr_sensor_times_out_without_a_usable_cpm(bag, tiny_env, caplog):
    s = tiny_env(actr={"cpm_wait_timeout_s": 1})
    o = run(bag, "actr", "2026-11-24")  # Tuesday: CPM of Monday 2026-11-23 (missing), W-7 missing too
    assert o.task_states["wait_for_cpm"] == "failed" and o.task_states.get("train_actr") in ("upstream_failed", None)
    assert "CPM checkpoint W=2026-11-23 needed by A-CTR 2026-11-24 is not published" in caplog.text
    assert artifacts.find_manifest(open_store(s.store), paths.actr_model("2026-11-24")) is None


@pytest.fixture
def webhook(webhook_receiver):
    base, received = webhook_receiver
    return f"{base}/hook", received


def test_failing_gate_stops_before_training_with_one_alert(bag, tiny_env, webhook):
    from ecdctr_pipeline import training

    url, received = webhook
    s = tiny_env(alerts={"notifiers": ["webhook"], "webhook_url": url})
    training.train_tpm(s, "2026-10")
    training.train_cpm(s, "2026-11-23")
    store = open_store(s.store)
    day, _ = delta.read(store, "raw/ad", partitions=["2026-11-23"])
    bad = day.set_column(day.schema.get_field_index("click"), "click", pa.array([2] * day.num_rows, pa.int8()))
    delta.write(store, "raw/ad", bad)
    o = run(bag, "actr", "2026-11-24")
    assert o.state == "failed" and o.task_states["quality_gate"] == "failed"
    assert o.task_states.get("train_actr") in ("upstream_failed", None)
    assert artifacts.find_manifest(store, paths.actr_model("2026-11-24")) is None
    assert len(received) == 1
    a = received[0]
    assert (a["kind"], a["subject"], a["logical_date"]) == ("quality_gate", "raw/ad", "2026-11-24")
    assert {d["label"] for d in a["details"]} >= {"click in {0,1}"}
    assert a["context"]["dag_id"] == "ecdctr_actr_daily"


# ------------------------------------------------------------------ end to end on S3 with Spark
@pytest.mark.slow
@pytest.mark.spark
def test_end_to_end_on_s3_then_idempotent_reruns(bag, s3_store_settings, tmp_path, monkeypatch):
    from ecdctr_pipeline import training
    from ecdctr_pipeline.serving import read_served
    from ecdctr_pipeline.settings import load_settings
    from ecdctr_pipeline.simulate import simulate

    st = s3_store_settings
    # TPM on 4 months (M-4..M-1) instead of 6: the same three snapshot months, a third less data
    cfg = write_config(tmp_path / "config.yaml", {
        "root": st.root, "endpoint_url": st.endpoint_url, "region": st.region, "allow_http": True,
        "access_key_id": "testing", "secret_access_key": "testing"}, calendar={"tpm_train_months": 4})
    monkeypatch.setenv("ECDCTR_CONFIG", str(cfg))
    s = load_settings()
    store = open_store(s.store)
    simulate(store, dt.date(2026, 6, 1), dt.date(2026, 11, 23), "tiny", seed=3, progress=False)
    for tier, day in (("tpm", "2026-10-01"), ("cpm", "2026-11-23"), ("actr", "2026-11-24")):
        o = run(bag, tier, day)
        assert o.state == "success", o
    served = read_served(store)["version"]
    sv = artifacts.read_manifest(store, paths.serving_version(served))
    assert sv.inputs.actr_model == "2026-11-24" and sv.inputs.cpm_checkpoint == "2026-11-23"
    assert sv.inputs.embedding_set == "2026-10" and sv.inputs.embedding_months == ["2026-07", "2026-08", "2026-09"]
    assert json.loads(store.get_bytes(paths.evaluation_report("2026-11-24")))["target_only"]["gauc_coverage"] > 0

    # re-running the DAG for a date whose artifacts exist leaves them untouched
    before = {p: (m.attempt, [f.sha256 for f in m.files]) for p, m in artifacts.list_artifacts(store)}
    rows_before = {t: delta.read(store, t)[0].num_rows for t in (paths.complete_features("ad"),
                                                                  paths.complete_features("natural"), paths.tpm_features())}
    assert run(bag, "actr", "2026-11-24").state == "success"
    after = {p: (m.attempt, [f.sha256 for f in m.files]) for p, m in artifacts.list_artifacts(store)}
    assert after == before
    assert {t: delta.read(store, t)[0].num_rows for t in rows_before} == rows_before  # no Delta duplicates
    # a forced re-run replaces atomically: a new attempt, the old one collected, no Delta duplicates
    old = artifacts.read_manifest(store, paths.actr_model("2026-11-24"))
    training.train_actr(s, "2026-11-24", force=True)
    new = artifacts.read_manifest(store, paths.actr_model("2026-11-24"))
    assert new.attempt != old.attempt
    assert set(store.iter_children(paths.actr_model("2026-11-24"))) == {new.attempt, "MANIFEST.json"}
    artifacts.verify(store, paths.actr_model("2026-11-24"))
