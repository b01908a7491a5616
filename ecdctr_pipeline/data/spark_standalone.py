"""A Spark standalone cluster on one machine, from the pinned pyspark distribution.

``StandaloneCluster`` starts a master and N workers (``spark-class ...deploy.master.Master`` /
``...deploy.worker.Worker``) bound to 127.0.0.1 and submits ``spark_jobs/ecdctr_cli.py ARGV`` to
it with ``spark-submit`` — the same command a production ``spark://`` master gets, with the session
configuration of :func:`ecdctr_pipeline.data.spark.submit_conf`. The tests and ``make
bench-features`` use it to prove the extraction on a real cluster (separate executor JVMs
that read and write the store themselves); production runs its own cluster.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from ecdctr_pipeline.core.errors import EcdctrError
from ecdctr_pipeline.core.settings import Settings
from ecdctr_pipeline.data.spark import SPARK_CLI_JOB
from ecdctr_pipeline.data.spark import submit_conf

JOBS_DIR = Path(__file__).resolve().parents[2] / "spark_jobs"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def master_status(url: str) -> dict | None:
    """The master's ``/json/`` status, or None while it is not up: connection refused, or the UI
    already listening but still answering with its HTML start page (seen on loaded machines)."""
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            body = r.read()
        status = json.loads(body)
    except (OSError, ValueError):
        return None
    return status if isinstance(status, dict) else None


def spark_home() -> Path:
    import pyspark

    return Path(pyspark.__file__).resolve().parent


def spark_submit(argv: list[str], settings: Settings, *, master: str, env: dict[str, str] | None = None,
                 extra: list[str] | None = None, timeout_s: float = 600) -> subprocess.CompletedProcess:
    """Run the ``ecdctr`` argv (``extract complete --domain ad --as-of D``) as a Spark application,
    ``spark_jobs/ecdctr_cli.py``, with the pinned pyspark's ``spark-submit`` on ``master``."""
    cmd = [str(spark_home() / "bin" / "spark-submit"), "--master", master,
           "--conf", f"spark.pyspark.python={sys.executable}", "--conf", f"spark.driver.memory={settings.spark.driver_memory}",
           *(extra or []), *submit_conf(settings), str(JOBS_DIR / SPARK_CLI_JOB), *argv]
    full_env = dict(os.environ, SPARK_HOME=str(spark_home()), SPARK_LOCAL_IP="127.0.0.1", PYSPARK_PYTHON=sys.executable)
    full_env.update(env or {})
    return subprocess.run(cmd, env=full_env, capture_output=True, text=True, timeout=timeout_s)


class StandaloneCluster:
    """``with StandaloneCluster(workers=2) as c: c.submit(["extract", "complete", ...], settings)``."""

    def __init__(self, workers: int = 2, cores_per_worker: int = 1, worker_memory: str = "1g",
                 host: str = "127.0.0.1", start_timeout_s: float = 90):
        self.workers, self.cores, self.memory, self.host = workers, cores_per_worker, worker_memory, host
        self.start_timeout_s = start_timeout_s
        self.port, self.ui_port = _free_port(), _free_port()
        self.work = Path(tempfile.mkdtemp(prefix="ecdctr-spark-standalone-"))
        self.procs: list[subprocess.Popen] = []

    @property
    def master_url(self) -> str:
        return f"spark://{self.host}:{self.port}"

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update({"SPARK_HOME": str(spark_home()), "SPARK_LOCAL_IP": self.host, "SPARK_LOG_DIR": str(self.work),
                    "SPARK_WORKER_DIR": str(self.work / "work"), "PYSPARK_PYTHON": sys.executable})
        return env

    def _spawn(self, name: str, args: list[str]) -> None:
        log = open(self.work / f"{name}.log", "wb")
        self.procs.append(subprocess.Popen([str(spark_home() / "bin" / "spark-class"), *args], env=self._env(),
                                           stdout=log, stderr=subprocess.STDOUT, start_new_session=True))

    def status(self) -> dict | None:
        return master_status(f"http://{self.host}:{self.ui_port}/json/")

    def start(self) -> "StandaloneCluster":
        self._spawn("master", ["org.apache.spark.deploy.master.Master", "--host", self.host, "--port", str(self.port),
                               "--webui-port", str(self.ui_port)])
        for i in range(self.workers):
            self._spawn(f"worker-{i}", ["org.apache.spark.deploy.worker.Worker", "--host", self.host,
                                        "--cores", str(self.cores), "--memory", self.memory,
                                        "--webui-port", str(_free_port()), "--work-dir", str(self.work / f"w{i}"),
                                        self.master_url])
        deadline = time.monotonic() + self.start_timeout_s
        while True:
            alive = [w for w in (self.status() or {}).get("workers", []) if w.get("state") == "ALIVE"]
            if len(alive) >= self.workers:
                return self
            if time.monotonic() > deadline or any(p.poll() is not None for p in self.procs):
                logs = "; ".join(f"{p.name}: {p.read_text(errors='replace')[-300:]}" for p in self.work.glob("*.log"))
                self.stop()
                raise EcdctrError(f"Spark standalone cluster did not start at {self.master_url}: {logs}")
            time.sleep(0.5)

    def submit(self, argv: list[str], settings: Settings, *, env: dict[str, str] | None = None,
               executor_memory: str = "768m", timeout_s: float = 600) -> subprocess.CompletedProcess:
        """``spark-submit --master spark://... spark_jobs/ecdctr_cli.py ARGV`` with the session conf."""
        return spark_submit(argv, settings, master=self.master_url, env={**self._env(), **(env or {})},
                            extra=["--conf", f"spark.executor.memory={executor_memory}"], timeout_s=timeout_s)

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                try:
                    os.killpg(p.pid, 15)
                except ProcessLookupError:
                    pass
        for p in self.procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, 9)
        self.procs = []
        shutil.rmtree(self.work, ignore_errors=True)

    def __enter__(self) -> "StandaloneCluster":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
