"""make bench-features: complete-feature extraction, Spark vs DuckDB SQL, and a Spark cluster.

Simulates the natural domain at the chosen scale for one CPM window plus its history, then
times (1) the complete features written as Parquet in-process, Spark local[*] vs DuckDB SQL
(target: Spark within 3x), and (2) the whole job as production runs it — ``spark-submit
spark_jobs/ecdctr_cli.py extract complete ...`` writing Delta with delta-spark — on a standalone master with
2 one-core workers vs ``local[2]``, same data (ratio reported, no target on 2 cores).
"""

from __future__ import annotations

import argparse
import datetime as dt
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import save, timed  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--scale", default="medium")
    p.add_argument("--monday", default="2026-11-23")
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args(argv)

    import duckdb

    from ecdctr_pipeline.core import calendar, paths
    from ecdctr_pipeline.data import delta
    from ecdctr_pipeline.data.extract import spark_raw_schema
    from ecdctr_pipeline.data.features import complete_features
    from ecdctr_pipeline.data.features_duckdb import complete_features_sql
    from ecdctr_pipeline.core.report import markdown_table
    from ecdctr_pipeline.core.settings import Settings, StoreSettings
    from ecdctr_pipeline.data.simulate import simulate
    from ecdctr_pipeline.data.spark import get_spark
    from ecdctr_pipeline.data.store import open_store

    work = Path(tempfile.mkdtemp(prefix="ecdctr-bench-features-"))
    try:
        settings = Settings(store=StoreSettings(root=f"file://{work / 'store'}"))
        f = settings.features
        plan = calendar.cpm_plan(args.monday, settings.calendar)
        history = max(f.history_days, max(f.counter_windows_days))
        start = plan.window.start - dt.timedelta(days=history)
        store = open_store(settings.store)
        print(f"simulating {args.scale} natural {start} .. {plan.window.end - dt.timedelta(days=1)}", file=sys.stderr)
        simulate(store, start, plan.window.end - dt.timedelta(days=1), args.scale, seed=1, domains=("natural",),
                 schema=f.feature_schema())
        files = delta.file_uris(store, paths.raw_table("natural"),
                                calendar.Window(start, plan.window.end).partitions())
        n_in = delta.read(store, paths.raw_table("natural"))[0].num_rows
        fs = f.feature_schema()
        kw = dict(max_seq_len=f.max_seq_len, history_days=f.history_days, counter_windows_days=f.counter_windows_days,
                  raw_names=fs.names)
        s, e = plan.window.start.isoformat(), plan.window.end.isoformat()

        spark = get_spark(settings)
        raw = spark.read.schema(spark_raw_schema(fs)).parquet(*files)

        def run_spark():
            out = work / "spark-out"
            complete_features(raw, s, e, **kw).write.mode("overwrite").partitionBy("dt").parquet(str(out))

        con = duckdb.connect()
        con.execute(f"SET threads TO {spark.sparkContext.defaultParallelism}")
        file_list = ", ".join(f"'{x}'" for x in files)
        sql = complete_features_sql(f"read_parquet([{file_list}])", s, e, **kw)

        def run_duckdb():
            out = work / "duck-out"
            shutil.rmtree(out, ignore_errors=True)
            con.execute(f"COPY ({sql}) TO '{out}' (FORMAT parquet, PARTITION_BY (dt))")

        n_out = con.execute(f"SELECT count(*) FROM ({sql})").fetchone()[0]
        print("warm-up runs", file=sys.stderr)
        run_spark()
        run_duckdb()
        print(f"timing {args.repeat} runs each", file=sys.stderr)
        t_duck, _ = timed(run_duckdb, args.repeat)
        t_spark, _ = timed(run_spark, args.repeat)
        cores = spark.sparkContext.defaultParallelism
        rows = [
            ("DuckDB SQL (reference)", n_in, n_out, t_duck, f"{n_out / t_duck:,.0f}", "1.00"),
            (f"Spark {settings.spark.master} ({cores} cores)", n_in, n_out, t_spark, f"{n_out / t_spark:,.0f}",
             f"{t_spark / t_duck:.2f}"),
        ]
        spark.stop()
        print(f"timing the spark-submit job, {args.repeat} runs each: local[2], then standalone 2 workers",
              file=sys.stderr)
        from ecdctr_pipeline.data.spark_standalone import StandaloneCluster, spark_submit

        from ecdctr_pipeline.orchestration import steps

        # the CPM DAG's extraction step, rendered for the Monday, forced to recompute each run
        job = [*steps.render(steps.TIERS["cpm"].step("extract_natural_features").argv, args.monday), "--force"]
        env = {"ECDCTR_STORE": settings.store.root}

        def check(r):
            if r.returncode != 0:
                raise SystemExit(f"spark-submit failed: {(r.stdout + r.stderr)[-1500:]}")

        t_local2, _ = timed(lambda: check(spark_submit(job, settings, master="local[2]",
                                                        env=env)), args.repeat)
        with StandaloneCluster(workers=2, cores_per_worker=1, worker_memory="2g") as cluster:
            t_cluster, _ = timed(lambda: check(cluster.submit(job, settings, env=env,
                                                              executor_memory="1536m")), args.repeat)
        rows += [
            ("spark-submit local[2] → Delta (reference for the cluster)", n_in, n_out, t_local2,
             f"{n_out / t_local2:,.0f}", f"{t_local2 / t_duck:.2f}"),
            ("spark-submit standalone, 2 workers × 1 core → Delta", n_in, n_out, t_cluster,
             f"{n_out / t_cluster:,.0f}", f"{t_cluster / t_duck:.2f} ({t_cluster / t_local2:.2f}x local[2])"),
        ]
        table = markdown_table(("engine", "input rows", "output rows", "median s", "output rows/s",
                                "time ratio vs DuckDB"), rows)
        text = (f"Complete-feature extraction, scale {args.scale}, CPM window {plan.window} + {history} days of "
                f"history, median of {args.repeat}\n\n{table}\n\nTarget: Spark within 3x of DuckDB "
                f"({'met' if t_spark / t_duck <= 3 else 'NOT met'}).")
        print(text)
        print(f"\nsaved to {save('features', text)}", file=sys.stderr)
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
