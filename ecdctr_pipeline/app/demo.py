"""``ecdctr demo`` (``make demo``): the main job end to end on the embedded default.

1. simulate the ``small`` two-domain world over every day the calendar needs (skipped when the
   raw tables already hold them);
2. run the real Airflow DAGs with ``dag.test()`` on a private SQLite ``AIRFLOW_HOME``, in
   dependency order: the TPM month of the embedding set, the CPM Monday(s), the A-CTR days —
   Spark local for extraction, Great Expectations gates, TensorFlow on CPU, export to
   ``serving/actr/<version>``;
3. report: stage timings, GAUC of A-CTR vs Target-only per day (Markdown + PNG), the lineage
   of the served version and where the artifacts are.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import sys
import time
import warnings
from pathlib import Path

from ecdctr_pipeline.data import artifacts, delta
from ecdctr_pipeline.core import calendar, paths
from ecdctr_pipeline.core.errors import EcdctrError
from ecdctr_pipeline.core.report import markdown_table, progress
from ecdctr_pipeline.core.settings import Settings
from ecdctr_pipeline.data.store import open_store


# saved by tests/integration/test_scheduler.py (headless Chromium on the Airflow UI)
GRID_PNG = "airflow_actr_grid.png"
GRID_NOTE = ("The Airflow UI's grid of `ecdctr_actr_daily` after the scheduler test's pass (scheduler, DAG "
             "processor, triggerer and API server on 127.0.0.1; the runs backfilled through the REST API), "
             "screenshot taken with headless Chromium by `make test`.")


def demo_calendar(as_of: dt.date, days: int, settings: Settings):
    cal = settings.calendar
    actr_days = [as_of - dt.timedelta(days=i) for i in range(days - 1, -1, -1)]
    mondays = sorted({calendar.actr_plan(d, cal).cpm_monday for d in actr_days})
    months = sorted({calendar.Month.parse(calendar.cpm_plan(w, cal).embedding_set) for w in mondays})
    first = calendar.tpm_plan(months[0], cal).data_window.start
    return months, mondays, actr_days, first


def lineage_of_served(store) -> dict | None:
    from ecdctr_pipeline.serving.pointer import read_served

    v = read_served(store).get("version")
    if v is None:
        return None
    s = artifacts.read_manifest(store, paths.serving_version(v))
    a = artifacts.read_manifest(store, paths.actr_model(s.inputs.actr_model))
    c = artifacts.read_manifest(store, paths.cpm_checkpoint(a.inputs.cpm_checkpoint))
    t = artifacts.read_manifest(store, paths.tpm_set(c.inputs.embedding_set))
    return {"serving_version": v, "serving_uri": store.uri(paths.serving_version(v)),
            "actr_model": a.artifact_id, "actr_window": a.data_window, "actr_gauc": a.metrics.get("gauc"),
            "warm_start_policy": a.extra.get("warm_start", {}).get("policy"),
            "cpm_checkpoint": c.artifact_id, "cpm_window": c.data_window, "cpm_gauc": c.metrics.get("gauc"),
            "embedding_set": t.artifact_id, "embedding_months": t.months, "tpm_trained_on": t.params.get("train_months"),
            "delta_versions": {**t.inputs.delta_tables, **c.inputs.delta_tables, **a.inputs.delta_tables}}


def run_demo(settings: Settings, *, as_of: str, days: int, json_out: bool = False, scale: str = "small",
             seed: int = 0, out_dir: str = "reports/demo") -> int:
    import os
    import tempfile

    # quiet unless -v (decided before Airflow's import configures logging at INFO): see the runs below
    quiet = not logging.getLogger("ecdctr_pipeline").isEnabledFor(logging.INFO)
    from ecdctr_pipeline.orchestration import runner
    from ecdctr_pipeline.data.simulate import simulate

    t_all = time.perf_counter()
    day = calendar.parse_date(as_of, what="--as-of")
    months, mondays, actr_days, first = demo_calendar(day, days, settings)
    store = open_store(settings.store)
    timings: list[tuple[str, float, str]] = []
    print(f"E-CDCTR demo: store {store.root}; TPM {', '.join(map(str, months))}; CPM "
          f"{', '.join(map(str, mondays))}; A-CTR {actr_days[0]} .. {actr_days[-1]}", flush=True)

    # 1. data
    t0 = time.perf_counter()
    need = calendar.Window(first, day).partitions()
    have = {d: set(delta.partitions(store, paths.raw_table(d))) for d in paths.DOMAINS}
    missing = [d for d in paths.DOMAINS if not set(need) <= have[d]]
    if missing:
        simulate(store, first, day - dt.timedelta(days=1), scale, seed, domains=tuple(missing),
                 schema=settings.features.feature_schema())
        note = f"{scale}, seed {seed}, {len(need)} days"
    else:
        note = "raw data already present"
    timings.append(("simulate raw data", time.perf_counter() - t0, note))

    # 2. the DAGs. Quiet unless -v: dag.test runs the tasks in this process, so their INFO logs,
    # the steps' JSON results (written to <AIRFLOW_HOME>/demo-runs.log) and library warnings stay
    # off the console, which shows one bar over the runs and each fit's bar
    t0 = time.perf_counter()
    home = Path(store.local_path("_airflow")) if store.is_local else Path(tempfile.mkdtemp(prefix="ecdctr-airflow-"))
    home.mkdir(parents=True, exist_ok=True)
    failed = []
    with contextlib.ExitStack() as quieted:
        if quiet:
            logging.disable(logging.INFO)
            quieted.callback(logging.disable, logging.NOTSET)
            quieted.enter_context(warnings.catch_warnings())
            warnings.simplefilter("ignore")
            runs_log = quieted.enter_context(open(home / "demo-runs.log", "w"))
            quieted.enter_context(contextlib.redirect_stdout(runs_log))
        env = {k: v for k, v in os.environ.items() if k.startswith("ECDCTR_")}
        runner.prepare_airflow_home(home, {"ECDCTR_STORE": store.root, **env})
        bag = runner.load_dags()
        timings.append(("Airflow: db migrate + parse DAGs", time.perf_counter() - t0, f"AIRFLOW_HOME {home}"))
        runs = runner.calendar_runs(months, mondays, actr_days)
        for tier, d in progress(runs, desc="DAG runs", unit="run") if quiet else runs:
            print(f"running {runner.DAG_IDS[tier]} for {d} ...", flush=True)
            o = runner.run_dag(bag, tier, d)
            timings.append((f"DAG {o.dag_id} {o.logical_date}", o.seconds, o.state))
            if o.state != "success":
                failed.append(o)
                print(f"{o.dag_id} {o.logical_date}: {o.state} {o.task_states}", file=sys.stderr, flush=True)

    # 3. report: the daily metrics page (the same one `ecdctr metrics` writes) and the lineage
    from ecdctr_pipeline.app import metrics_page

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    lineage = lineage_of_served(store)
    total = time.perf_counter() - t_all
    t_table = markdown_table(("stage", "seconds", "note"), [(n, f"{s:.1f}", note) for n, s, note in timings]
                             + [("total", f"{total:.1f}", "")])
    here = lambda text: text.replace(f"file://{Path.cwd()}/", "file://./").replace(f"{Path.cwd()}/", "./")  # noqa: E731
    try:
        page = metrics_page.write(store, actr_days[0], actr_days[-1], out / "metrics", label=here(store.root))
        rows = page["rows"]
        g_table = markdown_table(metrics_page.COLUMNS, [metrics_page.cells(r) for r in rows])
    except EcdctrError as exc:  # no A-CTR model was published (the runs failed): say so in the report
        rows, g_table = [], f"(no A-CTR model: {exc})"
    lin = "(nothing served)" if lineage is None else "\n".join(
        [f"- serving version {lineage['serving_version']} at {lineage['serving_uri']}",
         f"- ← A-CTR model {lineage['actr_model']} (ad window [{lineage['actr_window']['start']}, "
         f"{lineage['actr_window']['end']}), GAUC {lineage['actr_gauc']:.4f}, transfer {lineage['warm_start_policy']})",
         f"- ← CPM checkpoint {lineage['cpm_checkpoint']} (natural window [{lineage['cpm_window']['start']}, "
         f"{lineage['cpm_window']['end']}), GAUC {lineage['cpm_gauc']:.4f})",
         f"- ← TPM embedding set {lineage['embedding_set']}: months {', '.join(lineage['embedding_months'])} "
         f"(trained on {', '.join(lineage['tpm_trained_on'] or [])})",
         f"- Delta versions read: {lineage['delta_versions']}"])
    where = "\n".join(f"- {k}: {store.uri(v)}" for k, v in (
        ("raw and feature tables (Delta)", ""), ("TPM embedding sets", paths.TPM_SETS),
        ("CPM checkpoints", paths.CPM_CHECKPOINTS), ("A-CTR models", paths.ACTR_MODELS),
        ("serving versions + models.config", "serving"), ("quality results", paths.QUALITY),
        ("evaluation reports", "reports/actr")))
    md = (f"# E-CDCTR demo — A-CTR {actr_days[0]} .. {actr_days[-1]}\n\n## Stages\n\n{t_table}\n\n"
          f"## GAUC on each day's holdout\n\n{g_table}\n\n" + ("![daily metrics](metrics/metrics.png)\n\n"
                                                                 "Page: [metrics/metrics.html](metrics/metrics.html)\n\n"
                                                                 if rows else "")
          + f"## Lineage of the served version\n\n{lin}\n\n## Where the artifacts are\n\n{where}\n"
          + (f"\n## The A-CTR DAG under a real scheduler\n\n{GRID_NOTE}\n\n![A-CTR grid]({GRID_PNG})\n"
             if (out / GRID_PNG).is_file() else ""))
    # the committed report names paths under the working directory relatively (no machine's paths)
    (out / "demo.md").write_text(here(md))
    if json_out:
        print(json.dumps({"timings": timings, "gauc": rows, "lineage": lineage, "report": str(out / "demo.md"),
                          "failed": [o.__dict__ for o in failed]}, indent=2, default=str))
    else:
        print("\n" + md + f"\nreport: {out / 'demo.md'}" + (f", page: {out / 'metrics' / 'metrics.html'}" if rows else ""))
    return 1 if failed else 0
