"""``make e2e``: the production shape on one machine, started here and torn down after.

Every component is a container of the project's own images on one podman network:

  s3                     an S3-compatible server (moto, from the trainer image)
  spark-master, -1, -2   a standalone Spark master and two workers (the Spark image)
  airflow-*              Airflow's API server, scheduler, DAG processor and triggerer (the
                         Airflow image; LocalExecutor, SQLite on a shared volume)
  step containers        ``orchestration.execution: docker``: every task of the DAGs starts a
                         container of its step's image through podman's Docker-compatible
                         socket, with the command its Kubernetes pod gets: extraction on the
                         Spark cluster through s3a, A-CTR trained by two TF workers
                         (MultiWorkerMirroredStrategy across two containers)

A tiny log is simulated into the bucket (trainer image), then the calendar is run as an operator
runs it, through Airflow's REST API: CPM 2026-11-23 (a trigger) and the A-CTR days 2026-11-24..25
(a backfill) first; once both wait at their sensors, TPM 2026-10-01 (a trigger). The DAGs'
sensors hold each tier until its upstream has published. Checked after, as a user would: every run green with its
tasks in step order, the manifests in S3, the served pointer, the Spark applications on the
master, the two trainer workers, no step container left behind, and ``ecdctr status`` run from
outside the network. A screenshot of the A-CTR grid goes to reports/e2e/.

    .venv/bin/python scripts/e2e.py [--keep] [--timeout-s 3600]

The work folder (build/e2e: settings, Airflow's database and every task log) is kept for
inspection; the containers, the network and the socket are removed, also on failure.
"""

from __future__ import annotations

import argparse
import datetime as dt
import fcntl
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

from ecdctr_pipeline.core.errors import EcdctrError

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "build" / "e2e"
REPORT = ROOT / "reports" / "e2e"
PODMAN = ["podman", "--runtime", "runc", "--cgroup-manager", "cgroupfs"]
CREDS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": "us-east-1"}
BUCKET = "ecdctr-e2e"
TPM_DAY, CPM_DAY, ACTR_DAYS = "2026-10-01", "2026-11-23", ("2026-11-24", "2026-11-25")
SIM = ("2026-07-01", "2026-11-24")  # six months of both domains, up to the last A-CTR day's holdout


class E2EError(Exception):
    pass


def say(msg: str) -> None:
    print(f"e2e [{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def version() -> str:
    m = re.search(r'^version = "([^"]+)"', (ROOT / "pyproject.toml").read_text(), re.M)
    return m.group(1)


class Stack:
    """The containers, network and socket of one run; :meth:`down` removes them all."""

    def __init__(self, work: Path):
        self.id = uuid.uuid4().hex[:8]
        self.prefix = f"ecdctr-e2e-{self.id}"
        self.net = self.prefix
        self.work = work
        self.env = {**os.environ, "CONTAINERS_CONF": str(ROOT / "docker" / "containers.conf")}
        self.service: subprocess.Popen | None = None
        self.names: list[str] = []  # the long-running containers, in start order
        self.sock = work / "podman.sock"

    def podman(self, *args: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
        r = subprocess.run([*PODMAN, *args], env=self.env, capture_output=True, text=True, timeout=timeout)
        if check and r.returncode != 0:
            raise E2EError(f"podman {' '.join(args[:3])} ...: {(r.stderr.strip().splitlines() or ['?'])[-1]}")
        return r

    def name(self, short: str) -> str:
        return f"{self.prefix}-{short}"

    def up_engine(self) -> None:
        self.podman("network", "create", self.net)
        # the Docker-compatible API the Airflow workers' DockerOperator talks to
        self.service = subprocess.Popen([*PODMAN, "system", "service", "--time=0", f"unix://{self.sock}"],
                                        env=self.env, stdout=open(self.work / "logs" / "podman-service.log", "wb"),
                                        stderr=subprocess.STDOUT, start_new_session=True)
        for _ in range(100):
            if self.sock.exists():
                break
            time.sleep(0.1)
        else:
            raise E2EError("podman system service made no socket in 10 s: see build/e2e/logs/podman-service.log")
        self.sock.chmod(0o666)  # the Airflow containers' user (50000) connects to it

    def run(self, short: str, image: str, *args: str, ports: dict[int, int] | None = None,
            env: dict[str, str] | None = None, mounts: list[str] = (), entrypoint: str | None = None,
            detach: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
        name = self.name(short)
        cmd = ["run", "--name", name, "--hostname", name, "--network", self.net, "--no-healthcheck",
               "--label", f"ecdctr-e2e={self.id}"]
        cmd += ["-d"] if detach else ["--rm"]
        for host, inner in (ports or {}).items():
            cmd += ["-p", f"127.0.0.1:{host}:{inner}"]
        for k, v in (env or {}).items():
            cmd += ["-e", f"{k}={v}"]
        for m in mounts:
            cmd += ["-v", m]
        if entrypoint:
            cmd += ["--entrypoint", entrypoint]
        if detach:
            self.names.append(name)
        return self.podman(*cmd, image, *args, timeout=timeout)

    def containers(self, *filters: str) -> list[str]:
        """This run's containers (label), narrowed by podman ps ``--filter`` expressions."""
        r = self.podman("ps", "-a", "--filter", f"label=ecdctr-e2e={self.id}",
                        *[x for f in filters for x in ("--filter", f)], "--format", "{{.Names}}", check=False)
        return r.stdout.split()

    def on_network(self) -> list[str]:
        r = self.podman("ps", "-a", "--filter", f"network={self.net}", "--format", "{{.Names}}", check=False)
        return r.stdout.split()

    def down(self) -> None:
        for name in self.names:  # their logs stay in the work folder
            r = self.podman("logs", name, check=False, timeout=60)
            (self.work / "logs" / f"{name.removeprefix(self.prefix + '-')}.log").write_text(r.stdout + r.stderr)
        left = sorted(set(self.on_network()) | set(self.containers()))
        if left:
            self.podman("rm", "-f", "-t", "5", *left, check=False, timeout=120)
        self.podman("network", "rm", "-f", self.net, check=False)
        if self.service and self.service.poll() is None:
            os.killpg(self.service.pid, signal.SIGTERM)
            self.service.wait(timeout=30)
        self.sock.unlink(missing_ok=True)


def free_port() -> int:
    from ecdctr_pipeline.core.net import free_port as fp

    return fp()


def wait_http(url: str, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise E2EError(f"{what} did not answer at {url} in {timeout_s:.0f} s") from None
            time.sleep(1)


def settings_file(stack: Stack, images: dict[str, str]) -> dict:
    """The deployment's settings (mounted read-only into every container at
    /etc/ecdctr/config.yaml): the store on the S3 server, the standalone Spark master, docker
    execution with two trainer workers, and a small model for the tiny log."""
    return {
        "store": {"root": f"s3://{BUCKET}/pipeline", "endpoint_url": f"http://{stack.name('s3')}:5000",
                  "region": "us-east-1", "allow_http": True},
        "spark": {"master": f"spark://{stack.name('spark-master')}:7077", "driver_memory": "1g",
                  "shuffle_partitions": 4},
        "features": {"engine": "spark", "max_seq_len": 10,
                     "hash_buckets": {"user_id": 400, "item_id": 300, "category_id": 16, "item_brand": 50}},
        "calendar": {"tpm_train_months": 3},
        "tpm": {"batch_size": 1024, "hidden_units": [16]},
        "cpm": {"hidden_units": [32, 16], "batch_size": 512, "epochs": 1, "attention_units": [8]},
        # blessing is not what this run is about (a day's GAUC on the tiny log swings by more than
        # the default tolerance): every model passes, so each day exports and the last one serves
        "actr": {"batch_size": 256, "epochs": 1, "bless_tolerance": 1.0, "min_gauc": 0.0},
        "training": {"workers": 2},
        "orchestration": {
            "execution": "docker", "retries": 0, "sensor_mode": "deferrable", "sensor_poke_interval_s": 5,
            "sensor_timeout_s": 3600, "compare_target_only": False,
            "docker": {"url": "unix:///run/podman.sock", "trainer_image": images["trainer"],
                       "spark_image": images["spark"], "network": stack.net,
                       "config_source": str(stack.work / "config.yaml")},
        },
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--timeout-s", type=float, default=3600, help="for the runs, once submitted (default 3600)")
    p.add_argument("--keep", action="store_true", help="leave the containers running (remove them with "
                   "`podman rm -f $(podman ps -aq --filter label=ecdctr-e2e)`)")
    a = p.parse_args(argv)
    if not shutil.which("podman"):
        raise E2EError("podman not found: `make images` installs it")
    v = version()
    images = {n: f"localhost/ecdctr/{n}:{v}" for n in ("trainer", "spark", "airflow")}
    WORK.parent.mkdir(exist_ok=True)
    lock = open(WORK.parent / "e2e.lock", "w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise E2EError("another make e2e is running (build/e2e.lock)") from None
    probe = Stack(WORK)
    for n, img in images.items():
        if probe.podman("image", "exists", img, check=False).returncode != 0:
            raise E2EError(f"no image {img}: `make images` builds it")
    shutil.rmtree(WORK, ignore_errors=True)
    for d in (WORK, WORK / "logs", WORK / "airflow"):
        d.mkdir(parents=True)
        d.chmod(0o777)  # written by the containers' users (Airflow 50000, Spark 185, trainer)
    stack = Stack(WORK)
    t0 = time.perf_counter()
    timings: dict[str, float] = {}
    try:
        result = run(stack, images, a, timings, t0)
    finally:
        if not a.keep:
            say("tearing down: containers, network, socket")
            stack.down()
    timings["total_s"] = round(time.perf_counter() - t0, 1)
    failures = result.pop("failures")
    result["timings"] = timings
    REPORT.mkdir(parents=True, exist_ok=True)
    (REPORT / "e2e.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    say(f"timings: {timings}; summary: reports/e2e/e2e.json; logs: build/e2e/logs, task logs build/e2e/airflow/logs")
    if failures:
        for f in failures:
            print(f"e2e: FAILED: {f}", file=sys.stderr)
        return 1
    say(f"passed: {len(result['checks'])} checks")
    return 0


def run(stack: Stack, images: dict[str, str], a, timings: dict, t0: float) -> dict:
    import yaml

    from ecdctr_pipeline.orchestration.local_airflow import SENSOR_WAITING, AirflowAPI, airflow_env

    work = stack.work
    cfg = settings_file(stack, images)
    (work / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    (work / "config.yaml").chmod(0o644)
    ecdctr_env = {"ECDCTR_CONFIG": "/etc/ecdctr/config.yaml", **CREDS}
    config_mount = f"{work / 'config.yaml'}:/etc/ecdctr/config.yaml:ro"
    stack.up_engine()

    # ---------------------------------------------------------------- S3 and the Spark cluster
    s3_port, spark_ui, api_port = free_port(), free_port(), free_port()
    say(f"network {stack.net}: S3 server, Spark master and two workers")
    stack.run("s3", images["trainer"], "-m", "moto.server", "-H", "0.0.0.0", "-p", "5000",  # noqa: S104
              entrypoint="python", ports={s3_port: 5000})
    master = stack.name("spark-master")
    stack.run("spark-master", images["spark"], "master", "--host", master, "--port", "7077",
              "--webui-port", "8080", ports={spark_ui: 8080})
    for i in (1, 2):
        stack.run(f"spark-worker-{i}", images["spark"], "worker", f"spark://{master}:7077", "--cores", "1",
                  "--memory", "1536m", "--work-dir", "/tmp/spark-work", "--host", stack.name(f"spark-worker-{i}"))
    s3_url = f"http://127.0.0.1:{s3_port}"
    wait_http(s3_url, 120, "the S3 server")
    import boto3

    boto3.client("s3", endpoint_url=s3_url, region_name="us-east-1", aws_access_key_id="testing",
                 aws_secret_access_key="testing").create_bucket(Bucket=BUCKET)

    # ---------------------------------------------------------------- data, while Airflow starts
    say(f"simulating a tiny log {SIM[0]}..{SIM[1]} (trainer image) while Airflow starts")
    sim_log = open(work / "logs" / "simulate.log", "wb")
    sim = subprocess.Popen([*PODMAN, "run", "--rm", "--name", stack.name("simulate"), "--network", stack.net,
                            "--label", f"ecdctr-e2e={stack.id}", "-v", config_mount,
                            *[f"-e{k}={v}" for k, v in {**ecdctr_env, "ECDCTR_ORCHESTRATION__EXECUTION": "in_process"}.items()],
                            images["trainer"], "simulate", "--start", SIM[0], "--end", SIM[1], "--scale", "tiny",
                            "--seed", "3", "--json"], env=stack.env, stdout=sim_log, stderr=subprocess.STDOUT)
    t_sim = time.perf_counter()

    # ---------------------------------------------------------------- Airflow
    base = f"http://127.0.0.1:{api_port}"
    api_name = stack.name("airflow-api")
    env = {**airflow_env(base=base, host="0.0.0.0", port=8080, parallelism=3, use_job_schedule=False,  # noqa: S104
                         execution_api_url=f"http://{api_name}:8080"),
           "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": "sqlite:////shared/airflow.db",
           "AIRFLOW__LOGGING__BASE_LOG_FOLDER": "/shared/logs", **ecdctr_env}
    envfile = work / "airflow.env"  # holds the deployment's JWT secret: not on a command line
    envfile.write_text("".join(f"{k}={v}\n" for k, v in env.items()))
    envfile.chmod(0o600)
    af_mounts = [f"{work / 'airflow'}:/shared", f"{stack.sock}:/run/podman.sock", config_mount]
    af_args = ["--env-file", str(envfile)]

    def airflow(short: str, *args: str, detach: bool = True, ports=None):
        name = stack.name(short)
        cmd = ["run", "--name", name, "--hostname", name, "--network", stack.net, "--no-healthcheck",
               "--label", f"ecdctr-e2e={stack.id}", *af_args, *[x for m in af_mounts for x in ("-v", m)]]
        cmd += ["-d"] if detach else ["--rm"]
        for h, i in (ports or {}).items():
            cmd += ["-p", f"127.0.0.1:{h}:{i}"]
        if detach:
            stack.names.append(name)
        return stack.podman(*cmd, images["airflow"], *args)

    say("Airflow: db migrate, then API server, scheduler, DAG processor, triggerer")
    t_af = time.perf_counter()
    airflow("airflow-migrate", "db", "migrate", detach=False)
    airflow("airflow-api", "api-server", "--host", "0.0.0.0", "--port", "8080", ports={api_port: 8080})  # noqa: S104
    for c in ("scheduler", "dag-processor", "triggerer"):
        airflow(f"airflow-{c}", c)
    af = AirflowAPI(base, poll_s=5)
    deadline = time.monotonic() + 300
    while not af.healthy():
        dead = [n.removeprefix(stack.prefix + "-") for n in stack.containers("status=exited") if "simulate" not in n]
        if dead or time.monotonic() > deadline:
            why = f"{', '.join(dead)} exited" if dead else "not healthy after 300 s"
            raise E2EError(f"Airflow did not start ({why}): see build/e2e/logs")
        time.sleep(2)
    timings["airflow_start_s"] = round(time.perf_counter() - t_af, 1)
    say(f"Airflow healthy at {base} after {timings['airflow_start_s']} s")
    if sim.wait(timeout=1800) != 0:
        raise E2EError(f"simulate exited {sim.returncode}: see build/e2e/logs/simulate.log")
    timings["simulate_s"] = round(time.perf_counter() - t_sim, 1)
    say(f"log simulated in {timings['simulate_s']} s")

    # ---------------------------------------------------------------- the calendar, through REST
    from ecdctr_pipeline.orchestration.steps import DAG_IDS, TIERS

    TPM, CPM, ACTR = DAG_IDS["tpm"], DAG_IDS["cpm"], DAG_IDS["actr"]
    af.wait_for_dags([TPM, CPM, ACTR], timeout_s=300)
    for d in (TPM, CPM, ACTR):
        af.unpause(d)
    # downstream first: CPM and the first A-CTR day are held at their sensors before TPM starts (a barrier,
    # so "the sensors held them" is checked every run, not only when the machine's timing happens to allow it)
    t_runs = time.perf_counter()
    af.trigger(CPM, CPM_DAY)
    af.backfill(ACTR, ACTR_DAYS[0], ACTR_DAYS[-1])
    say(f"submitted: CPM {CPM_DAY} (trigger), A-CTR {ACTR_DAYS[0]}..{ACTR_DAYS[-1]} (backfill)")
    af.wait_task(CPM, "wait_for_embedding_set", SENSOR_WAITING, timeout_s=a.timeout_s)
    af.wait_task(ACTR, "wait_for_cpm", SENSOR_WAITING, timeout_s=a.timeout_s)
    say(f"+{time.perf_counter() - t_runs:5.0f} s CPM and A-CTR {ACTR_DAYS[0]} wait at their sensors; "
        f"submitting TPM {TPM_DAY} (trigger)")
    af.trigger(TPM, TPM_DAY)
    last = [None]

    def progress(states):
        running = {}
        for d, rs in states.items():
            running[d.removeprefix("ecdctr_")] = rs
        if running != last[0]:
            say(f"+{time.perf_counter() - t_runs:5.0f} s runs: {running}")
            last[0] = running

    runs = af.wait_runs({TPM: 1, CPM: 1, ACTR: len(ACTR_DAYS)}, timeout_s=a.timeout_s, progress=progress)
    timings["runs_s"] = round(time.perf_counter() - t_runs, 1)

    # ---------------------------------------------------------------- what a user checks
    checks: list[str] = []
    failures: list[str] = []

    def check(ok: bool, what: str, detail: object = "") -> None:
        (checks if ok else failures).append(what if ok else f"{what}: {detail}")
        say(f"{'ok  ' if ok else 'FAIL'} {what}")

    states = {d: [(r["logical_date"][:10], r["state"]) for r in rs] for d, rs in runs.items()}
    want = {TPM: [(TPM_DAY, "success")], CPM: [(CPM_DAY, "success")], ACTR: [(d, "success") for d in ACTR_DAYS]}
    check(states == want, "every run succeeded: TPM, CPM, two A-CTR days", states)
    tier_of = {v: k for k, v in DAG_IDS.items()}
    tasks: dict[str, dict] = {}
    for d, rs in runs.items():
        for r in rs:
            ti = af.task_states(d, r["dag_run_id"])
            key = f"{tier_of[d]} {r['logical_date'][:10]}"
            tasks[key] = {t.task_id: {"state": t.state, "start": t.start, "end": t.end,
                                      "seconds": round((t.end - t.start).total_seconds(), 1) if t.start and t.end else None}
                          for t in ti.values()}
            order = sorted((t for t in ti.values() if t.start), key=lambda t: t.start)
            check([t.task_id for t in order] == [s.name for s in TIERS[tier_of[d]].steps],
                  f"{key}: tasks ran in step order", [t.task_id for t in order])

    # the store, read from outside the network (the published S3 port)
    from ecdctr_pipeline.core import paths
    from ecdctr_pipeline.core.settings import StoreSettings
    from ecdctr_pipeline.data import artifacts
    from ecdctr_pipeline.data.store import open_store
    from ecdctr_pipeline.serving.pointer import read_served

    store = open_store(StoreSettings(root=f"s3://{BUCKET}/pipeline", endpoint_url=s3_url, region="us-east-1",
                                     access_key_id="testing", secret_access_key="testing", allow_http=True))
    # the sensors held the downstream tiers: waiting before the upstream published, the guarded step after
    # (the publish time is the manifest's; Airflow records the upstream task's end only once its container exited)
    from ecdctr_pipeline.orchestration.local_airflow import TaskState, sensor_held

    def _ti(run: dict, task: str) -> TaskState:
        t = run[task]
        return TaskState(task, t["state"], t["start"], t["end"], 0)

    if all(k in tasks for k in (f"cpm {CPM_DAY}", f"actr {ACTR_DAYS[0]}")):
        cpm, a1 = tasks[f"cpm {CPM_DAY}"], tasks[f"actr {ACTR_DAYS[0]}"]
        published = {}
        for what, key in (("tpm", paths.tpm_set(TPM_DAY[:7])), ("cpm", paths.cpm_checkpoint(CPM_DAY))):
            try:
                published[what] = artifacts.read_manifest(store, key).created_at
            except Exception as exc:  # noqa: BLE001 - reported by the check below
                published[what] = f"{type(exc).__name__}: {exc}"
        held = (sensor_held(_ti(cpm, "wait_for_embedding_set"), _ti(cpm, "train_cpm"), published["tpm"])
                and sensor_held(_ti(a1, "wait_for_cpm"), _ti(a1, "train_actr"), published["cpm"]))
        check(held, "the sensors held CPM until TPM published, A-CTR until CPM published",
              {"cpm wait start": cpm["wait_for_embedding_set"]["start"], "tpm published": published["tpm"],
               "cpm train start": cpm["train_cpm"]["start"], "actr wait start": a1["wait_for_cpm"]["start"],
               "cpm published": published["cpm"], "actr train start": a1["train_actr"]["start"]})

    for day in ACTR_DAYS:
        what = f"A-CTR {day}: its manifest names CPM {CPM_DAY}"
        try:
            m = artifacts.read_manifest(store, paths.actr_model(day))
        except Exception as exc:  # a missing artifact is a failed check, the others still run
            check(False, what, f"{type(exc).__name__}: {exc}")
        else:
            check(m.inputs.cpm_checkpoint == CPM_DAY, what, m.inputs.cpm_checkpoint)
    served: dict = {}
    what = f"the served pointer = A-CTR {ACTR_DAYS[-1]}, CPM {CPM_DAY}, embeddings 2026-10"
    try:
        served = read_served(store) or {}
        sv = artifacts.read_manifest(store, paths.serving_version(served["version"]))
    except Exception as exc:
        check(False, what, f"{type(exc).__name__}: {exc}")
    else:
        check((sv.inputs.actr_model, sv.inputs.cpm_checkpoint, sv.inputs.embedding_set)
              == (ACTR_DAYS[-1], CPM_DAY, "2026-10"), f"{what} (version {served['version']})",
              (sv.inputs.actr_model, sv.inputs.cpm_checkpoint, sv.inputs.embedding_set))
    status_env = {k: v for k, v in os.environ.items() if not k.startswith("ECDCTR_")}
    status_env.update({"ECDCTR_CONFIG": "", "ECDCTR_STORE": f"s3://{BUCKET}/pipeline", "ECDCTR_STORE__ENDPOINT_URL": s3_url,
                       "ECDCTR_STORE__ALLOW_HTTP": "true", **CREDS})
    r = subprocess.run([str(Path(sys.executable).with_name("ecdctr")), "status", "--json"], env=status_env,
                       capture_output=True, text=True, timeout=300)
    status = json.loads(r.stdout) if r.returncode == 0 else {}
    tables = {t["table"] for t in status.get("tables", [])}
    kinds = sorted({x["kind"] for x in status.get("artifacts", [])})
    check({"raw/ad", "raw/natural", "features/complete/ad", "features/complete/natural"} <= tables
          and not status.get("corrupt"), "ecdctr status from outside: the Delta tables Spark wrote, nothing corrupt",
          r.stderr[-500:] or sorted(tables))

    # Spark: every extraction task an application of the standalone cluster, finished
    with urllib.request.urlopen(f"http://127.0.0.1:{spark_ui}/json/", timeout=10) as resp:
        master_state = json.loads(resp.read())
    apps = master_state.get("completedapps", [])
    n_spark = sum(1 for key in tasks for s in TIERS[key.split()[0]].steps if s.kind == "spark")
    check(len(apps) >= n_spark and all(x.get("state") == "FINISHED" for x in apps)
          and len(master_state.get("workers", [])) == 2,
          f"Spark master: {len(apps)} finished applications on 2 workers (the {n_spark} extraction tasks)",
          [(x.get("name"), x.get("state")) for x in apps])

    # two TF workers trained each A-CTR day: worker 0's log names the strategy, worker 1's tail follows
    for day in ACTR_DAYS:
        logs = sorted((work / "airflow" / "logs").glob(f"dag_id={ACTR}/run_id=*{day}*/task_id=train_actr/*.log"))
        text = "".join(p.read_text(errors="replace") for p in logs)
        check("multi_worker: 2 replica(s), worker 1/2" in text and "[worker 1]" in text,
              f"A-CTR {day}: trained by two TF workers (MultiWorkerMirroredStrategy across two containers)",
              [str(p) for p in logs] or "no task log")
    left = [n for n in stack.on_network() if n not in stack.names]
    check(not left, "no step container left behind", left)

    shot = af.screenshot(f"/dags/{ACTR}", REPORT / "airflow_actr_grid.png")
    check(shot.stat().st_size > 20_000, f"screenshot of the A-CTR grid: {shot.relative_to(ROOT)}")
    timings["to_checks_s"] = round(time.perf_counter() - t0, 1)
    return {"runs": states, "tasks": tasks, "checks": checks, "failures": failures,
            "spark_apps": [(x.get("name"), x.get("duration")) for x in apps], "served": served}


if __name__ == "__main__":
    try:
        raise SystemExit(main())
    except (E2EError, EcdctrError) as exc:  # a run that never finished, a container that never came up
        print(f"e2e: error: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
