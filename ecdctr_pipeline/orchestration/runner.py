"""Run the real DAGs in-process with ``dag.test()`` on SQLite, in dependency order (TPM month →
CPM Mondays → A-CTR days). Used by ``ecdctr demo`` and the end-to-end tests."""

from __future__ import annotations

import datetime as dt
import logging
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from ecdctr_pipeline.orchestration.steps import DAG_IDS

log = logging.getLogger(__name__)

DAGS_FOLDER = Path(__file__).resolve().parents[2] / "dags"


@dataclass
class RunOutcome:
    dag_id: str
    logical_date: str
    state: str
    seconds: float
    task_states: dict[str, str]


def prepare_airflow_home(home: Path, env: dict[str, str] | None = None) -> dict[str, str]:
    """A private AIRFLOW_HOME with SQLite, examples off; ``airflow db migrate`` once."""
    home.mkdir(parents=True, exist_ok=True)
    vars_ = {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_FOLDER),
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
        **(env or {}),
    }
    os.environ.update(vars_)
    if not (home / "airflow.db").exists():
        airflow = Path(sys.executable).with_name("airflow")
        r = subprocess.run([str(airflow), "db", "migrate"], env={**os.environ}, capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"airflow db migrate failed: {r.stderr.strip().splitlines()[-1:]}")
    return vars_


def load_dags():
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAGS_FOLDER))
    if bag.import_errors:
        raise RuntimeError(f"DAG import errors: {bag.import_errors}")
    return bag


def run_dag(bag, tier: str, day: dt.date) -> RunOutcome:
    dag = bag.get_dag(DAG_IDS[tier])
    t0 = time.perf_counter()
    logical = dt.datetime.combine(day, dt.time(), dt.timezone.utc)
    run = dag.test(logical_date=logical)
    states = {}
    try:
        for ti in run.get_task_instances():
            states[ti.task_id] = str(ti.state.value if hasattr(ti.state, "value") else ti.state)
    except Exception:  # noqa: BLE001 - states are a report nicety
        pass
    state = str(run.state.value if hasattr(run.state, "value") else run.state)
    return RunOutcome(dag.dag_id, day.isoformat(), state, round(time.perf_counter() - t0, 1), states)


def calendar_runs(tpm_months: list, mondays: list[dt.date], days: list[dt.date]) -> list[tuple[str, dt.date]]:
    return ([("tpm", m.first_day) for m in tpm_months] + [("cpm", w) for w in mondays]
            + [("actr", d) for d in days])
