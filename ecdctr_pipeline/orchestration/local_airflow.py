"""A real Airflow 3 deployment on one machine: scheduler, DAG processor, triggerer and API server
as separate processes on 127.0.0.1, with the LocalExecutor and SQLite in a private
``AIRFLOW_HOME``. The tests drive the DAGs through it the way an operator does — Airflow's
public REST API (``/api/v2``) and ``airflow backfill create`` — instead of ``dag.test()``.

Production runs the official Helm chart (KubernetesExecutor, PostgreSQL); what differs is the
executor and the database, not the DAGs, the steps or the commands.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ecdctr_pipeline.core.errors import EcdctrError
from ecdctr_pipeline.core.net import free_port
from ecdctr_pipeline.orchestration.runner import DAGS_FOLDER

COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
TERMINAL = ("success", "failed")
# a sensor that is waiting: handed to the triggerer, between reschedules, or poking in a worker slot
SENSOR_WAITING = ("deferred", "up_for_reschedule", "running")


@dataclass
class TaskState:
    task_id: str
    state: str | None
    start: dt.datetime | None
    end: dt.datetime | None
    try_number: int


def sensor_held(waiting: TaskState, after: TaskState, published_at: str) -> bool:
    """A sensor held its run: ``waiting`` (the sensor) started before the upstream artifact was
    published, and ``after`` (the step it guards) started no earlier than the publish. The publish
    time is the manifest's ``created_at`` (whole seconds), not the upstream task's end in Airflow:
    that is recorded once the task process (or container) has exited, which can be after the
    sensor saw the manifest and the guarded step began."""
    try:
        at = _ts(published_at)
    except ValueError:  # not a timestamp (the manifest could not be read): not held
        return False
    return bool(at and waiting.start and after.start) and waiting.start < at <= after.start


def _ts(v: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(v.replace("Z", "+00:00")) if v else None


def airflow_env(*, base: str, host: str, port: int, parallelism: int, use_job_schedule: bool,
                execution_api_url: str | None = None) -> dict[str, str]:
    """The configuration every component of a one-machine deployment shares (LocalExecutor,
    simple auth with everyone an admin, one JWT secret): :class:`LocalAirflow`'s processes and
    ``make e2e``'s containers. ``execution_api_url``: where task processes reach the API server
    (default ``base``)."""
    return {
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": str(parallelism),
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{(execution_api_url or base).rstrip('/')}/execution/",
        "AIRFLOW__API__BASE_URL": base,
        "AIRFLOW__API__HOST": host,
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__API_AUTH__JWT_SECRET": os.urandom(16).hex(),
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "0.5",
        "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": str(use_job_schedule),
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",  # task logs show the steps' progress
    }


class AirflowAPI:
    """A client of one Airflow deployment's public REST API (``/api/v2``) at ``base``: what an
    operator does through it (unpause, trigger, backfill, clear) and reads from it (runs, task
    states, health). :class:`LocalAirflow` starts a deployment as processes; ``make e2e``
    (scripts/e2e.py) as containers of the Airflow image."""

    def __init__(self, base: str, *, poll_s: float = 1.0):
        self.base = base.rstrip("/")
        self.poll_s = poll_s

    def healthy(self) -> bool:
        """Every component the health endpoint reports (database, scheduler, triggerer, DAG
        processor) is healthy; False while the API server does not answer."""
        try:
            health = self._get("/api/v2/monitor/health")
        except (OSError, EcdctrError, ValueError):
            return False
        return all((health.get(c) or {}).get("status") == "healthy"
                   for c in ("metadatabase", "scheduler", "triggerer", "dag_processor"))

    # ------------------------------------------------------------------ REST API (/api/v2)
    def token(self) -> str:
        """A JWT from the auth manager's token endpoint (all users are admins in this deployment)."""
        with urllib.request.urlopen(f"{self.base}/auth/token", timeout=30) as r:
            return json.loads(r.read())["access_token"]

    def api(self, method: str, path: str, body: dict | None = None, *, retries: int = 10) -> Any:
        """One REST call. SQLite allows one writer at a time: HTTP 503 (busy) and HTTP 500 "Database
        error" (a locked database, e.g. on the audit-log insert that precedes the request's own work;
        the transaction is rolled back, nothing was done) are retried."""
        if not getattr(self, "_token", None):
            self._token = self.token()
        for attempt in range(retries + 1):
            req = urllib.request.Request(self.base + path, method=method,
                                         data=None if body is None else json.dumps(body).encode(),
                                         headers={"Authorization": f"Bearer {self._token}",
                                                  "Content-Type": "application/json", "Accept": "application/json"})
            try:
                with urllib.request.urlopen(req, timeout=60) as r:
                    raw = r.read()
                return json.loads(raw) if raw else None
            except urllib.error.HTTPError as exc:
                detail = exc.read().decode(errors="replace")[:500]
                locked = exc.code == 503 or (exc.code == 500 and '"reason":"Database error"' in detail)
                if not locked or attempt == retries:
                    raise EcdctrError(f"{method} {path}: HTTP {exc.code}: {detail}") from None
                time.sleep(1 + attempt)

    def _get(self, path: str) -> Any:
        with urllib.request.urlopen(self.base + path, timeout=10) as r:
            return json.loads(r.read())

    def wait_for_dags(self, dag_ids: list[str], timeout_s: float = 120) -> None:
        """Until the DAG processor has serialised every DAG (they then show in the API)."""
        deadline = time.monotonic() + timeout_s
        while True:
            have = {d["dag_id"] for d in self.api("GET", "/api/v2/dags?limit=100")["dags"]}
            if set(dag_ids) <= have:
                return
            if time.monotonic() > deadline:
                errors = self.api("GET", "/api/v2/importErrors")
                raise EcdctrError(f"DAGs {sorted(set(dag_ids) - have)} not parsed after {timeout_s:.0f} s: {errors}")
            time.sleep(1)

    def unpause(self, dag_id: str) -> dict:
        return self.api("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": False})

    def trigger(self, dag_id: str, logical_date: str) -> str:
        r = self.api("POST", f"/api/v2/dags/{dag_id}/dagRuns", {"logical_date": f"{logical_date}T00:00:00Z"})
        return r["dag_run_id"]

    def backfill(self, dag_id: str, start: str, end: str) -> dict:
        """POST /api/v2/backfills: runs for every schedule point in [start, end], one at a time."""
        return self.api("POST", "/api/v2/backfills", {"dag_id": dag_id, "from_date": f"{start}T00:00:00Z",
                                                       "to_date": f"{end}T00:00:00Z", "max_active_runs": 1,
                                                       "reprocess_behavior": "none"})

    def runs(self, dag_id: str) -> list[dict]:
        return self.api("GET", f"/api/v2/dags/{dag_id}/dagRuns?limit=100&order_by=logical_date")["dag_runs"]

    def clear(self, dag_id: str, run_id: str) -> dict:
        """Clear a run (all its tasks): the scheduler runs it again."""
        return self.api("POST", f"/api/v2/dags/{dag_id}/dagRuns/{urllib.request.quote(run_id, safe='')}/clear",
                        {"dry_run": False})

    def task_states(self, dag_id: str, run_id: str) -> dict[str, TaskState]:
        r = self.api("GET", f"/api/v2/dags/{dag_id}/dagRuns/{urllib.request.quote(run_id, safe='')}/taskInstances")
        return {t["task_id"]: TaskState(t["task_id"], t["state"], _ts(t.get("start_date")), _ts(t.get("end_date")),
                                        t.get("try_number") or 0) for t in r["task_instances"]}

    def wait_task(self, dag_id: str, task_id: str, states: tuple[str, ...], timeout_s: float) -> TaskState:
        """Until ``task_id`` of the DAG's first run is in one of ``states`` (e.g. a sensor ``deferred``): the
        barrier that lets a caller hold a downstream run at its critical point before starting the upstream."""
        deadline = time.monotonic() + timeout_s
        while True:
            runs = self.runs(dag_id)
            if runs:
                t = self.task_states(dag_id, runs[0]["dag_run_id"]).get(task_id)
                if t is not None and t.state in states:
                    return t
                if runs[0]["state"] in TERMINAL:
                    raise EcdctrError(f"{dag_id} run {runs[0]['dag_run_id']} ended {runs[0]['state']} before "
                                      f"{task_id} reached {'/'.join(states)}")
            if time.monotonic() > deadline:
                raise EcdctrError(f"{dag_id}.{task_id} not {'/'.join(states)} after {timeout_s:.0f} s")
            time.sleep(self.poll_s)

    def wait_runs(self, expect: dict[str, int], timeout_s: float, progress=None) -> dict[str, list[dict]]:
        """Until each DAG in ``expect`` has that many runs, all finished (success or failed)."""
        deadline = time.monotonic() + timeout_s
        while True:
            runs = {d: self.runs(d) for d in expect}
            done = all(len(runs[d]) >= n and all(r["state"] in TERMINAL for r in runs[d]) for d, n in expect.items())
            if progress:
                progress({d: [r["state"] for r in rs] for d, rs in runs.items()})
            if done:
                return runs
            if time.monotonic() > deadline:
                raise EcdctrError(f"runs not finished after {timeout_s:.0f} s: "
                                  f"{ {d: [(r['logical_date'], r['state']) for r in rs] for d, rs in runs.items()} }")
            time.sleep(self.poll_s)

    def screenshot(self, page: str, out: Path, *, size: str = "1600,1000") -> Path:
        """A PNG of the UI's ``page`` (e.g. ``/dags/<dag_id>``) taken by headless Chromium."""
        from ecdctr_pipeline.core.report import screenshot

        return screenshot(self.base + page, out, size=size)


class LocalAirflow(AirflowAPI):
    """``with LocalAirflow(home, env={...}) as af: af.unpause(...); af.trigger(...)``."""

    def __init__(self, home: Path, env: dict[str, str] | None = None, *, parallelism: int = 2,
                 poll_s: float = 1.0, use_job_schedule: bool = True):
        """``use_job_schedule=False``: the scheduler creates no runs from the DAGs' schedules (only
        triggered and backfill runs execute), for a deployment whose clock is not the calendar's."""
        self.home = Path(home)
        self.port = free_port()
        super().__init__(f"http://127.0.0.1:{self.port}", poll_s=poll_s)
        self.procs: dict[str, subprocess.Popen] = {}
        bindir = str(Path(sys.executable).parent)
        self.env = {
            **os.environ,
            "PATH": bindir + os.pathsep + os.environ.get("PATH", ""),
            "AIRFLOW_HOME": str(self.home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_FOLDER),
            **airflow_env(base=self.base, host="127.0.0.1", port=self.port, parallelism=parallelism,
                          use_job_schedule=use_job_schedule),
            **(env or {}),
        }
        self.airflow = str(Path(sys.executable).with_name("airflow"))

    # ------------------------------------------------------------------ lifecycle
    def start(self, timeout_s: float = 180) -> "LocalAirflow":
        self.home.mkdir(parents=True, exist_ok=True)
        (self.home / "logs").mkdir(exist_ok=True)
        r = subprocess.run([self.airflow, "db", "migrate"], env=self.env, capture_output=True, text=True)
        if r.returncode != 0:
            raise EcdctrError(f"airflow db migrate failed in {self.home}: {(r.stderr.strip().splitlines() or ['?'])[-1]}")
        for name in COMPONENTS:
            log = open(self.home / "logs" / f"{name}.log", "ab")
            args = [self.airflow, name] + (["--host", "127.0.0.1", "--port", str(self.port)]
                                           if name == "api-server" else [])
            self.procs[name] = subprocess.Popen(args, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                                start_new_session=True)
        deadline = time.monotonic() + timeout_s
        while True:
            dead = [n for n, p in self.procs.items() if p.poll() is not None]
            if dead or time.monotonic() > deadline:
                why = f"{', '.join(dead)} exited" if dead else f"not healthy after {timeout_s:.0f} s"
                tail = {n: self.log_tail(n, 400) for n in (dead or COMPONENTS)}
                self.stop()
                raise EcdctrError(f"Airflow on {self.base} did not start ({why}): {tail}")
            if self.healthy():
                return self
            time.sleep(1)

    def stop(self) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + 20
        for p in self.procs.values():
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass

    def __enter__(self) -> "LocalAirflow":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def log_tail(self, component: str, chars: int = 2000) -> str:
        p = self.home / "logs" / f"{component}.log"
        return p.read_text(errors="replace")[-chars:] if p.exists() else ""

    def backfill_cli(self, dag_id: str, start: str, end: str, tries: int = 5) -> subprocess.CompletedProcess:
        """``airflow backfill create``: the same backfill from the command line (retried while
        SQLite is locked by the scheduler)."""
        for attempt in range(tries):
            r = subprocess.run([self.airflow, "backfill", "create", "--dag-id", dag_id, "--from-date", start,
                                "--to-date", end, "--max-active-runs", "1"], env=self.env, capture_output=True,
                               text=True, timeout=120)
            if r.returncode == 0 or "locked" not in (r.stdout + r.stderr) or attempt == tries - 1:
                return r
            time.sleep(2 + attempt)
        return r
