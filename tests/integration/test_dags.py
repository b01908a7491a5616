"""The three DAGs: integrity, sensors, an end-to-end dag.test() pass on the loopback S3 store,
idempotent re-runs, and a failing gate. Airflow runs on a private SQLite AIRFLOW_HOME."""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from ecdctr_pipeline.data import artifacts
from ecdctr_pipeline.core import paths
from ecdctr_pipeline.data.store import open_store
from ecdctr_pipeline.orchestration import steps

pytestmark = pytest.mark.integration

MODEL = {"features": {"max_seq_len": 10, "hash_buckets": {"user_id": 400, "item_id": 300, "category_id": 16,
                                                           "item_brand": 50}},
         "tpm": {"batch_size": 1024, "hidden_units": [16]},
         "cpm": {"hidden_units": [32, 16], "batch_size": 512, "epochs": 1, "attention_units": [8]},
         "actr": {"batch_size": 256, "epochs": 1, "min_gauc": 0.0},  # tiny: GAUC is noise (tests/conftest.py)
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
        assert dag.params["force"] is False and dag.params.get_param("force").schema["type"] == "boolean"
    # the daily model's deadline: 20 h after the run was queued, its callback importable on the triggerer
    from ecdctr_pipeline.orchestration import airflow_support, callbacks

    deadlines = {d: bag.get_dag(d).deadline for d in want}
    assert [d for d, x in deadlines.items() if x] == ["ecdctr_actr_daily"]
    (alert,) = deadlines["ecdctr_actr_daily"] if isinstance(deadlines["ecdctr_actr_daily"], list) else \
        [deadlines["ecdctr_actr_daily"]]
    assert alert.interval.total_seconds() == 20 * 3600 and type(alert.reference).__name__ == "DagRunQueuedAtDeadline"
    assert airflow_support.DEADLINE_CALLBACK == f"{callbacks.__name__}.deadline_missed"
    # the `force` param (UI "Trigger DAG w/ config", REST conf) reaches every step that takes --force,
    # rendered by Airflow's own templating
    from ecdctr_pipeline.cli.verbs import build_parser

    export = bag.get_dag("ecdctr_actr_daily").get_task("export_serving")
    for force, flag in ((False, "--no-force"), (True, "--force")):
        rendered = export.render_template(export.op_args, {"ds": "2026-11-24", "params": {"force": force}})
        assert rendered == [["export", "--as-of", "2026-11-24", "--json", flag]]
        assert build_parser().parse_args(rendered[0]).force is force
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
    monkeypatch.setenv("ECDCTR_ORCHESTRATION__TRAINER_POOL", "gpu")
    bag = DagBag(dag_folder=str(DAGS_FOLDER))
    assert bag.import_errors == {}
    op = bag.get_dag("ecdctr_actr_daily").get_task("train_actr")
    assert type(op).__name__ == "KubernetesPodOperator"
    # the GPU steps share one pool across the three DAGs; everything else stays in the default pool
    pools = {(d, t.task_id): t.pool for d in steps.DAG_IDS.values() for t in bag.get_dag(d).tasks}
    assert {k for k, p in pools.items() if p == "gpu"} == {
        (steps.TIERS[tier].dag_id, s.name) for tier in steps.TIERS for s in steps.TIERS[tier].steps if s.kind == "trainer"}
    assert set(pools.values()) == {"gpu", "default_pool"}
    assert op.cmds == ["ecdctr"] and op.arguments == [
        "train", "actr", "--as-of", "{{ ds }}", "--cpm", "{{ ti.xcom_pull(task_ids='wait_for_cpm')['cpm_checkpoint'] }}",
        "--json", "{{ '--force' if params.force else '--no-force' }}"]
    pod = op.full_pod_spec
    c = pod.spec.containers[0]
    assert c.image == "ecdctr/trainer:0.1.0" and c.resources.limits["nvidia.com/gpu"] == "1"
    assert pod.spec.service_account_name == "ecdctr" and pod.spec.node_selector == {"nvidia.com/gpu.present": "true"}
    assert pod.spec.tolerations[0].key == "nvidia.com/gpu"
    assert {e.name: e.value for e in c.env}["ECDCTR_CONFIG"] == "/etc/ecdctr/config.yaml"
    spark = bag.get_dag("ecdctr_actr_daily").get_task("extract_ad_features")
    assert spark.cmds == ["spark-submit"] and spark.arguments[-8:] == [
        "extract", "complete", "--domain", "ad", "--as-of", "{{ ds }}", "--json", "{{ '--force' if params.force else '--no-force' }}"]
    assert "nvidia.com/gpu" not in (spark.full_pod_spec.spec.containers[0].resources.limits or {})


def test_kubernetes_mode_with_workers_trains_in_indexed_jobs(airflow_db, monkeypatch):
    """training.workers: 2 → each train_* step is an Indexed Job of 2 trainer pods that find each
    other through the headless Service; evaluations stay single pods."""
    from airflow.dag_processing.dagbag import DagBag

    from ecdctr_pipeline.modeling import distribute
    from ecdctr_pipeline.orchestration.runner import DAGS_FOLDER

    monkeypatch.setenv("ECDCTR_ORCHESTRATION__EXECUTION", "kubernetes")
    monkeypatch.setenv("ECDCTR_TRAINING__WORKERS", "2")
    bag = DagBag(dag_folder=str(DAGS_FOLDER))
    assert bag.import_errors == {}
    for dag_id, task in (("ecdctr_tpm_monthly", "train_tpm"), ("ecdctr_cpm_weekly", "train_cpm"),
                         ("ecdctr_actr_daily", "train_actr")):
        op = bag.get_dag(dag_id).get_task(task)
        assert type(op).__name__ == "KubernetesJobOperator", task
        job = op.full_job_spec
        assert (job.spec.completion_mode, job.spec.completions, job.spec.parallelism) == ("Indexed", 2, 2)
        pod = job.spec.template.spec
        assert pod.subdomain == "ecdctr-trainer-workers"
        c = pod.containers[0]
        assert c.resources.limits["nvidia.com/gpu"] == "1" and c.ports[0].container_port == 2222
        env = {e.name: e for e in c.env}
        assert env["TRAINER_JOB_NAME"].value_from.field_ref.field_path == \
            "metadata.labels['batch.kubernetes.io/job-name']"
        # what the pod's environment turns into: worker k of 2, each reachable through the Service
        cfg = distribute.tf_config({"TRAINER_JOB_NAME": "actr-train-actr-abc", "JOB_COMPLETION_INDEX": "1",
                                    **{k: env[k].value for k in ("TRAINER_SERVICE", "TRAINER_WORKERS",
                                                                 "TRAINER_PORT")}})
        assert cfg["cluster"]["worker"] == ["actr-train-actr-abc-0.ecdctr-trainer-workers:2222",
                                             "actr-train-actr-abc-1.ecdctr-trainer-workers:2222"]
        assert env["ECDCTR_TRAINING__DISTRIBUTION"].value == "multi_worker"
    assert type(bag.get_dag("ecdctr_actr_daily").get_task("evaluate")).__name__ == "KubernetesPodOperator"


def test_kubernetes_mode_every_pod_runs_a_real_command(airflow_db, monkeypatch):
    """Each pod runs its registry step's argv, which the real CLI parser accepts once Airflow has
    rendered the templates (``ds``, the sensor's XCom) — never the image's default entrypoint."""
    from airflow.dag_processing.dagbag import DagBag

    from ecdctr_pipeline.cli.verbs import build_parser
    from ecdctr_pipeline.orchestration import commands, steps
    from ecdctr_pipeline.orchestration.runner import DAGS_FOLDER

    monkeypatch.setenv("ECDCTR_ORCHESTRATION__EXECUTION", "kubernetes")
    bag = DagBag(dag_folder=str(DAGS_FOLDER))
    xcoms = {"wait_for_cpm": {"cpm_checkpoint": "2026-11-23", "fallback": False}}
    pods = 0
    for tier, t in steps.TIERS.items():
        dag = bag.get_dag(t.dag_id)
        assert [op.task_id for op in dag.tasks] == [s.name for s in t.steps]
        for step in t.steps:
            op = dag.get_task(step.name)
            if step.kind not in steps.POD_KINDS:
                assert type(op).__name__ in ("StepSensor", "ShortCircuitOperator"), f"{t.dag_id}.{step.name}"
                continue
            pods += 1
            assert type(op).__name__ == "KubernetesPodOperator", f"{t.dag_id}.{step.name}"
            assert op.env_vars == {"ECDCTR_RUN_ID": "{{ run_id }}"} and "env_vars" in op.template_fields
            command = [*op.cmds, *op.arguments]
            assert command == commands.pod_command(step.kind, list(steps.argv_of(step)), spark_master="local[*]")
            argv = list(steps.argv_of(step))
            if step.kind == "spark":
                assert command[:2] == ["spark-submit", "--master"] and command[3].endswith("/ecdctr_cli.py")
                assert (DAGS_FOLDER.parent / "spark_jobs" / commands.SPARK_CLI_JOB).is_file()
                assert command[4:] == argv
            rendered = steps.render(argv, "2026-11-23", xcoms)
            args = build_parser().parse_args(rendered)  # SystemExit on an argv the CLI rejects
            assert callable(args.func) and rendered, f"{t.dag_id}.{step.name}"
            image = op.full_pod_spec.spec.containers[0].image
            assert image == ("ecdctr/spark:0.1.0" if step.kind == "spark" else "ecdctr/trainer:0.1.0")
            gpu = (op.full_pod_spec.spec.containers[0].resources.limits or {}).get("nvidia.com/gpu")
            assert (gpu == "1") == (step.kind == "trainer"), f"{t.dag_id}.{step.name}: GPU {gpu}"
    assert pods == 12
    assert steps.render(bag.get_dag("ecdctr_actr_daily").get_task("train_actr").arguments, "2026-11-24", xcoms)[-4:] == [
        "--cpm", "2026-11-23", "--json", "--no-force"]


def test_registry_checks_run_in_process(tiny_env, capsys):
    """The gate and check steps' argv through the CLI entry point on the tiny store."""
    from ecdctr_pipeline.app.main import main
    from ecdctr_pipeline.cli.verbs import execute
    from ecdctr_pipeline.core.errors import NotReadyError
    from ecdctr_pipeline.orchestration import steps

    tiny_env()
    actr, cpm = steps.TIERS["actr"], steps.TIERS["cpm"]
    rc, out = execute(steps.render(actr.step("quality_gate").argv, "2026-11-24"))
    assert rc == 0 and out["tables"] == ["raw/ad", "features/complete/ad"] and out["days"] == ["2026-11-23"]
    assert out["checks"] > 0
    with pytest.raises(NotReadyError, match="embedding set 2026-10 .* needed by CPM 2026-11-23 is not published"):
        execute(steps.render(cpm.step("wait_for_embedding_set").argv, "2026-11-23"))
    capsys.readouterr()
    # from the shell: exit 75 (not ready) and one line naming what is missing
    assert main(steps.render(actr.step("wait_for_cpm").argv, "2026-11-24")) == 75
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("ecdctr: error: CPM checkpoint W=2026-11-23 needed by A-CTR 2026-11-24")
    # no CPM checkpoint in the tiny store: one line naming the missing artifact, non-zero
    assert main(steps.render(cpm.step("evaluate_cpm").argv, "2026-11-23")) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("ecdctr: error: ") and "cpm/checkpoints/W=2026-11-23" in err[0]


def test_trainer_takes_the_sensors_choice_and_refuses_another(tiny_env):
    from ecdctr_pipeline import tiers
    from ecdctr_pipeline.core.errors import CalendarError
    from ecdctr_pipeline.tiers.actr import CheckpointMissing

    s = tiny_env()
    store = open_store(s.store)
    with pytest.raises(CalendarError, match=r"A-CTR 2026-11-24: --cpm 2026-11-09 is neither the plan's CPM checkpoint "
                                            r"W=2026-11-23 nor its allowed fallback W=2026-11-16"):
        tiers.train("actr", s, store, "2026-11-24", cpm="2026-11-09")
    with pytest.raises(CheckpointMissing, match="the chosen CPM checkpoint W=2026-11-16 is not published"):
        tiers.train("actr", s, store, "2026-11-24", cpm="2026-11-16")


# ------------------------------------------------------------------ sensors (tiny data, DuckDB engine)
@pytest.fixture
def tiny_env(tiny_pipeline_store, tmp_path, monkeypatch):
    dest = tmp_path / "store"
    shutil.copytree(tiny_pipeline_store, dest)

    def configure(**over):
        cfg = write_config(tmp_path / "config.yaml", {"root": f"file://{dest}"}, features={"engine": "duckdb"}, **over)
        monkeypatch.setenv("ECDCTR_CONFIG", str(cfg))
        from ecdctr_pipeline.core.settings import load_settings

        return load_settings()

    return configure


def _publish_set(store, set_id: str, months: list[str]):
    m = artifacts.Manifest(kind="tpm_embedding_set", artifact_id=set_id, logical_date=f"{set_id}-01", months=months)
    artifacts.publish(store, paths.tpm_set(set_id), {"tables.npz": b"x"}, m)


def test_cpm_sensor_fails_at_once_on_overlap(bag, tiny_env, caplog):
    s = tiny_env()
    store = open_store(s.store)
    _publish_set(store, "2026-10", ["2026-08", "2026-09", "2026-10"])  # a set whose months overlap the window
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
    """Deferred: the trigger waits (dag.test() runs it in-process) and times out naming the set.
    (Poke mode's timeout message is the A-CTR sensor test's.)"""
    tiny_env(orchestration={"sensor_mode": "deferrable"})
    o = run(bag, "cpm", "2026-11-23")
    assert o.state == "failed" and o.task_states["wait_for_embedding_set"] == "failed"
    assert "sensor_timeout ecdctr_cpm_weekly 2026-11-23" in caplog.text
    assert "timed out after 3 s: embedding set 2026-10 (months 2026-07, 2026-08, 2026-09)" in caplog.text


def test_actr_on_monday_waits_for_that_mondays_cpm(tiny_env):
    """The previous week's checkpoint exists, yet the Monday run waits for its own Monday's CPM
    until ``actr.cpm_wait_timeout_s``; only then does the staleness fallback apply (with an alert)."""
    from ecdctr_pipeline.cli.verbs import execute
    from ecdctr_pipeline.core.errors import NotReadyError
    from ecdctr_pipeline.tiers import readiness

    s = tiny_env(actr={"cpm_wait_timeout_s": 3600})
    store = open_store(s.store)
    prev = artifacts.Manifest(kind="cpm_checkpoint", artifact_id="2026-11-16", logical_date="2026-11-16")
    artifacts.publish(store, paths.cpm_checkpoint("2026-11-16"), {"model.keras": b"x"}, prev)
    assert readiness.cpm_checkpoint_ready(s, store, "2026-11-23", 60) is None
    assert "CPM checkpoint W=2026-11-23" in readiness.describe_missing_cpm(s, "2026-11-23")
    assert readiness.cpm_checkpoint_ready(s, store, "2026-11-23", 3600) == {"cpm_checkpoint": "2026-11-16", "fallback": True}
    # the sensor's check from the command line: lateness measured from the run's due time to --now
    with pytest.raises(NotReadyError):
        execute(["check", "cpm", "--as-of", "2026-11-23", "--now", "2026-11-23T00:59:00Z"])
    assert execute(["check", "cpm", "--as-of", "2026-11-23", "--now", "2026-11-23T01:00:00Z"]) == (
        0, {"cpm_checkpoint": "2026-11-16", "fallback": True})
    assert readiness.cpm_checkpoint_ready(s, store, "2026-11-25", 10**6) is None  # Wednesday: W-7 is too stale
    artifacts.publish(store, paths.cpm_checkpoint("2026-11-23"), {"model.keras": b"y"},
                      prev.model_copy(update={"artifact_id": "2026-11-23", "logical_date": "2026-11-23"}))
    assert readiness.cpm_checkpoint_ready(s, store, "2026-11-23", 0) == {"cpm_checkpoint": "2026-11-23", "fallback": False}


def test_actr_sensor_times_out_without_a_usable_cpm(bag, tiny_env, caplog):
    s = tiny_env(actr={"cpm_wait_timeout_s": 1})
    o = run(bag, "actr", "2026-11-24")  # Tuesday: CPM of Monday 2026-11-23 (missing), W-7 missing too
    assert o.task_states["wait_for_cpm"] == "failed" and o.task_states.get("train_actr") in ("upstream_failed", None)
    assert "CPM checkpoint W=2026-11-23 needed by A-CTR 2026-11-24 is not published" in caplog.text
    assert artifacts.find_manifest(open_store(s.store), paths.actr_model("2026-11-24")) is None


def _bag_in(monkeypatch, execution: str, **env):
    from airflow.dag_processing.dagbag import DagBag

    from ecdctr_pipeline.orchestration.runner import DAGS_FOLDER

    monkeypatch.setenv("ECDCTR_ORCHESTRATION__EXECUTION", execution)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    bag = DagBag(dag_folder=str(DAGS_FOLDER))
    assert bag.import_errors == {}
    return bag


def test_docker_mode_runs_every_step_with_its_pods_command(airflow_db, monkeypatch, tmp_path):
    """orchestration.execution: docker → every spark/trainer/job step is a container whose entry
    point + arguments are exactly its Kubernetes pod's command + args (same settings, a spark://
    master), with the settings file mounted where the pods mount theirs."""
    from ecdctr_pipeline.orchestration import containers, steps

    conf = tmp_path / "ecdctr.yaml"
    conf.write_text("store: {root: 's3://ecdctr/e2e'}\n")
    env = {"ECDCTR_SPARK__MASTER": "spark://spark-master:7077", "ECDCTR_ORCHESTRATION__DOCKER__CONFIG_SOURCE": str(conf),
           "ECDCTR_ORCHESTRATION__DOCKER__NETWORK": "ecdctr-e2e",
           "ECDCTR_ORCHESTRATION__DOCKER__TRAINER_IMAGE": "localhost/ecdctr/trainer:9",
           "ECDCTR_ORCHESTRATION__DOCKER__SPARK_IMAGE": "localhost/ecdctr/spark:9"}
    pods = _bag_in(monkeypatch, "kubernetes", **env)
    docker = _bag_in(monkeypatch, "docker", **env)
    compared = 0
    for tier, t in steps.TIERS.items():
        for step in t.steps:
            op = docker.get_dag(t.dag_id).get_task(step.name)
            if step.kind not in steps.POD_KINDS:
                assert type(op).__name__ != "StepContainerOperator", step.name
                continue
            pod = pods.get_dag(t.dag_id).get_task(step.name)
            assert type(op).__name__ == "StepContainerOperator", step.name
            assert [*op.entrypoint, *op.command] == [*pod.cmds, *pod.arguments], f"{tier}.{step.name}"
            assert op.image == f"localhost/ecdctr/{'spark' if step.kind == 'spark' else 'trainer'}:9"
            assert op.network_mode == "ecdctr-e2e" and op.mount_tmp_dir is False
            assert op.mounts[0] == {"source": str(conf), "target": containers.CONFIG_PATH, "type": "bind",
                                    "read_only": True}
            pod_env = {e.name: e.value for e in pod.full_pod_spec.spec.containers[0].env if e.value}
            assert op.environment["ECDCTR_CONFIG"] == pod_env["ECDCTR_CONFIG"] == containers.CONFIG_PATH
            assert op.environment["ECDCTR_ORCHESTRATION__EXECUTION"] == "in_process"
            assert op.environment["ECDCTR_RUN_ID"] == "{{ run_id }}"  # each step names its DAG run
            assert op.retrieve_output and op.retrieve_output_path == op.environment["ECDCTR_RESULT_FILE"]
            assert op.container_name == op.hostname and containers.NAME_SUFFIX in op.container_name
            assert op.workers == 1
            compared += 1
    assert compared >= 10
    assert docker.get_dag("ecdctr_actr_daily").get_task("extract_ad_features").command[:2] == \
        ["--master", "spark://spark-master:7077"]


def test_docker_mode_with_workers_runs_n_containers_and_needs_its_settings_file(airflow_db, monkeypatch, tmp_path):
    from ecdctr_pipeline.core.errors import ConfigError as SettingsError
    from ecdctr_pipeline.core.settings import load_settings

    conf = tmp_path / "ecdctr.yaml"
    conf.write_text("{}\n")
    bag = _bag_in(monkeypatch, "docker", ECDCTR_TRAINING__WORKERS="2",
                  ECDCTR_ORCHESTRATION__DOCKER__CONFIG_SOURCE=str(conf))
    train = bag.get_dag("ecdctr_actr_daily").get_task("train_actr")
    assert (train.workers, train.worker_port) == (2, 2222)
    assert bag.get_dag("ecdctr_actr_daily").get_task("evaluate").workers == 1
    monkeypatch.delenv("ECDCTR_ORCHESTRATION__DOCKER__CONFIG_SOURCE")
    with pytest.raises(SettingsError, match="orchestration.docker.config_source"):
        load_settings()
    monkeypatch.setenv("ECDCTR_ORCHESTRATION__DOCKER__CONFIG_SOURCE", str(conf))
    monkeypatch.setenv("ECDCTR_SPARK__MASTER", "k8s://https://kubernetes.default")
    with pytest.raises(SettingsError, match="spark.master"):
        load_settings()
