"""The one definition of every pipeline step.

Each tier is a chain of steps; a step is a name (the Airflow task id), a kind (where it runs)
and the ``ecdctr`` argv it runs, as Jinja templates over the run's context (``{{ ds }}``, the
XCom of an earlier step). Everything that runs the pipeline renders this table:

- the DAG files (:func:`airflow_support.render_tier`): in-process tasks that run the argv
  through the CLI entry point, or ``KubernetesPodOperator`` pods whose command is that argv;
- the pod specs that ``make lint-deploy`` validates (``orchestration/pods.py``);
- ``ecdctr backfill`` (``orchestration/backfill.py``), which renders the same templates with
  Jinja and runs the same argv, in the same order;
- ``ecdctr demo``, which runs the DAG files.

Kinds:
``spark``   feature extraction: ``spark-submit spark_jobs/ecdctr_cli.py ARGV`` in a pod of the
            Spark image, or the CLI in-process (Spark local);
``trainer`` GPU work in the trainer image (TF);
``job``     CPU work in the trainer image (gates, CPM evaluation, export);
``sensor``  a readiness check (``ecdctr check ...``) that the sensor repeats until it passes
            (deferred to the triggerer, or in reschedule/poke mode) and whose JSON result is
            its XCom; it never runs in a pod;
``branch``  a yes/no check in the Airflow worker: the run goes on only when ``condition`` in
            its JSON result is true (Airflow's short-circuit), else downstream steps are skipped.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Callable

from ecdctr_pipeline.core import calendar, paths

DS = "{{ ds }}"
KINDS = ("spark", "trainer", "job", "sensor", "branch")
POD_KINDS = ("spark", "trainer", "job")


# the DAG run's `force` param (set when triggering from the UI or REST: `{"conf": {"force": true}}`)
# on every step that takes --force; `ecdctr backfill --force` renders it the same way
FORCE = "{{ '--force' if params.force else '--no-force' }}"


def argv_of(step: "Step") -> tuple[str, ...]:
    """The step's argv as every runner renders it: its own, plus the force switch when it takes one."""
    return (*step.argv, FORCE) if step.force_flag else tuple(step.argv)


def xcom(task_id: str, key: str) -> str:
    """A template for a value an earlier step returned (its JSON result, pushed as XCom)."""
    return "{{ ti.xcom_pull(task_ids='%s')['%s'] }}" % (task_id, key)


@dataclass(frozen=True)
class Step:
    name: str
    kind: str
    argv: tuple[str, ...]
    doc: str
    outlet: str | None = None  # key of airflow_support.ASSETS
    retries: int | None = None  # None: orchestration.retries
    force_flag: bool = False  # the verb takes --force (``ecdctr backfill --force`` adds it)
    condition: str | None = None  # branch: the JSON key that must be true to go on
    timeout_s: Callable | None = None  # sensor: settings -> seconds (default orchestration.sensor_timeout_s)

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"step {self.name}: unknown kind {self.kind!r}: expected one of {', '.join(KINDS)}")
        if (self.kind == "branch") != (self.condition is not None):
            raise ValueError(f"step {self.name}: a condition is required for, and only for, branch steps")


@dataclass(frozen=True)
class Tier:
    name: str
    dag_id: str
    schedule: str
    steps: tuple[Step, ...]
    artifact: Callable[[dt.date], str]  # the store prefix the tier publishes for a logical date
    dates: Callable[[dt.date, dt.date], list[dt.date]] = field(repr=False, default=None)

    def step(self, name: str) -> Step:
        for s in self.steps:
            if s.name == name:
                return s
        raise KeyError(f"{self.dag_id} has no step {name!r}")


def _sensor_timeout(s) -> int:
    return s.orchestration.sensor_timeout_s


def _cpm_wait_timeout(s) -> int:
    # the A-CTR sensor must outlive the wait before the staleness fallback applies
    return max(s.orchestration.sensor_timeout_s, s.actr.cpm_wait_timeout_s + s.orchestration.sensor_poke_interval_s)


def _gate(tier: str) -> Step:
    return Step("quality_gate", "job", ("gate", tier, "--as-of", DS, "--json"), retries=0,
                doc="data-quality gate on the run's new data: alerts once and fails the run")


TIERS: dict[str, Tier] = {
    "tpm": Tier(
        "tpm", "ecdctr_tpm_monthly", "0 0 1 * *",
        (Step("extract_tpm_features", "spark", ("extract", "tpm", "--as-of", DS, "--json"), force_flag=True,
              doc="features/tpm for months M-6..M-1"),
         _gate("tpm"),
         Step("train_tpm", "trainer", ("train", "tpm", "--as-of", DS, "--json"), outlet="tpm", force_flag=True,
              doc="TPM month by month; publishes embedding set M")),
        artifact=lambda d: paths.tpm_set(calendar.Month.of(d)),
        dates=lambda a, b: [m.first_day for m in calendar.month_starts_between(a, b)]),
    "cpm": Tier(
        "cpm", "ecdctr_cpm_weekly", "0 0 * * 1",
        (Step("extract_natural_features", "spark", ("extract", "complete", "--domain", "natural", "--as-of", DS,
                                                    "--json"), force_flag=True,
              doc="features/complete/natural for [W-28d, W)"),
         _gate("cpm"),
         Step("wait_for_embedding_set", "sensor", ("check", "embedding-set", "--as-of", DS, "--json"), retries=0,
              timeout_s=_sensor_timeout, doc="embedding set month(W-28d) published; an overlapping set fails at once"),
         Step("train_cpm", "trainer", ("train", "cpm", "--as-of", DS, "--json"), outlet="cpm", force_flag=True,
              doc="the complete model with the set's historical block"),
         Step("evaluate_cpm", "job", ("evaluate", "cpm", "--as-of", DS, "--json"),
              doc="refuses a CPM without GAUC on its evaluation tail")),
        artifact=paths.cpm_checkpoint,
        dates=calendar.mondays_between),
    "actr": Tier(
        "actr", "ecdctr_actr_daily", "0 0 * * *",
        (Step("extract_ad_features", "spark", ("extract", "complete", "--domain", "ad", "--as-of", DS, "--json"),
              force_flag=True, doc="features/complete/ad for [D-28d, D)"),
         _gate("actr"),
         Step("wait_for_cpm", "sensor", ("check", "cpm", "--as-of", DS, "--alert", "--json"), retries=0,
              timeout_s=_cpm_wait_timeout,
              doc="the CPM checkpoint of the week; the previous one after actr.cpm_wait_timeout_s if fresh enough"),
         Step("train_actr", "trainer", ("train", "actr", "--as-of", DS, "--cpm", xcom("wait_for_cpm", "cpm_checkpoint"),
                                        "--json"), outlet="actr", force_flag=True,
              doc="fine-tune from the CPM the sensor chose; gated against the served model"),
         Step("evaluate", "trainer", ("evaluate", "actr", "--as-of", DS, "--json"), force_flag=True,
              doc="A-CTR vs Target-only on the holdout (orchestration.compare_target_only)"),
         Step("bless", "branch", ("check", "blessed", "--as-of", DS, "--json"), retries=0, condition="blessed",
              doc="export only a blessed model"),
         Step("export_serving", "job", ("export", "--as-of", DS, "--json"), outlet="serving", force_flag=True,
              doc="the next TF Serving version, then served")),
        artifact=paths.actr_model,
        dates=lambda a, b: list(calendar.iter_days(a, b))),
}

DAG_IDS = {t: tier.dag_id for t, tier in TIERS.items()}


def render(argv: tuple[str, ...] | list[str], ds: str, results: dict[str, dict] | None = None,
           params: dict | None = None) -> list[str]:
    """Render a step's argv templates outside Airflow (``ecdctr backfill``), with Jinja as
    Airflow does: ``ds``, ``params`` (the DAG's: ``force``) and ``ti.xcom_pull(task_ids=...)`` over
    earlier steps' results."""
    import jinja2

    results = results or {}

    class _TI:
        @staticmethod
        def xcom_pull(task_ids: str, key: str = "return_value"):
            if task_ids not in results:
                raise KeyError(f"step {task_ids!r} has not run: its result is not available")
            return results[task_ids]

    env = jinja2.Environment(undefined=jinja2.StrictUndefined)
    params = {"force": False, **(params or {})}
    return [env.from_string(a).render(ds=ds, ti=_TI(), params=params) if "{" in a else a for a in argv]
