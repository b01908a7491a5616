"""The production extraction path: spark-submit to a standalone cluster (master + 2 workers on
127.0.0.1), the store on the loopback S3 server through s3a, Delta written by delta-spark."""

from __future__ import annotations

import datetime as dt
import subprocess
import threading

import pytest
from deltalake import DeltaTable

from ecdctr_pipeline.data import delta
from ecdctr_pipeline.core import paths
from ecdctr_pipeline.data.extract import complete_job, complete_window, extract_complete
from ecdctr_pipeline.core.settings import Settings, SparkSettings
from ecdctr_pipeline.data.simulate import simulate
from ecdctr_pipeline.data.spark import DELTA_PROTOCOL
from ecdctr_pipeline.data.store import open_store
from ecdctr_pipeline.orchestration import steps
from tests.conftest import json_result, new_bucket

pytestmark = [pytest.mark.integration, pytest.mark.spark, pytest.mark.slow]

KEYS = ["user_id", "item_id", "event_time"]


# a 7-day A-CTR window: the same code as 28 days, a quarter of the data (test time)
WEEK = {"ECDCTR_CALENDAR__ACTR_WINDOW_DAYS": "7"}


def _settings(store_settings) -> Settings:
    return Settings(store=store_settings, spark=SparkSettings(master="local[2]", shuffle_partitions=2,
                                                              driver_memory="1g"),
                    calendar={"actr_window_days": 7})


def _submit_env(store_settings) -> dict[str, str]:
    """How a pod is configured: settings through ECDCTR_* variables (keys never on argv)."""
    return {"ECDCTR_STORE": store_settings.root, "ECDCTR_STORE__ENDPOINT_URL": store_settings.endpoint_url,
            "ECDCTR_STORE__ALLOW_HTTP": "true", "ECDCTR_STORE__ACCESS_KEY_ID": "testing",
            "ECDCTR_STORE__SECRET_ACCESS_KEY": "testing", "ECDCTR_SPARK__SHUFFLE_PARTITIONS": "2",
            "ECDCTR_SPARK__DRIVER_MEMORY": "1g"}


def _extract_ad(day: str) -> list[str]:
    """The A-CTR DAG's extraction step, rendered for ``day``: what its Spark pod runs."""
    return steps.render(steps.argv_of(steps.TIERS["actr"].step("extract_ad_features")), day)


def _result(stdout: str) -> dict:
    """The CLI's JSON result (Spark may print log lines around it)."""
    out = json_result(stdout)
    assert "table" in out, stdout[-2000:]
    return out


def _sorted(table):
    return table.sort_by([(k, "ascending") for k in KEYS])


@pytest.fixture(scope="module")
def two_buckets(s3_endpoint):
    """The same seeded ad log in two buckets: one for the cluster, one for the single-machine engine."""
    out = []
    for _ in range(2):
        s = new_bucket(s3_endpoint)
        simulate(open_store(s), dt.date(2026, 10, 20), dt.date(2026, 11, 25), "tiny", seed=4, domains=("ad",),
                 progress=False)
        out.append(s)
    return out


def test_concurrent_cluster_writers_on_s3a_land_or_fail_cleanly_and_equal_local(spark_cluster, two_buckets):
    """Two A-CTR extraction steps submitted at once to the cluster, on one S3 bucket: each lands or
    the loser fails at once in one line; what landed equals the single-machine extraction of the same
    log row for row.
    (One test, not two: each cluster submit costs about a minute of test time.)"""
    on_cluster, on_local = two_buckets
    store = open_store(on_cluster)
    days = ["2026-11-24", "2026-11-25"]
    results: dict[str, subprocess.CompletedProcess] = {}

    def run(day):  # one core each, so both drivers and their executors run at once
        results[day] = spark_cluster.submit(_extract_ad(day), _settings(on_cluster),
                                            env={**_submit_env(on_cluster), **WEEK,
                                                 "ECDCTR_SPARK__EXTRA_CONF": "{spark.cores.max: '1'}"})

    threads = [threading.Thread(target=run, args=(d,)) for d in days]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    landed = [d for d in days if results[d].returncode == 0]
    settings = _settings(on_cluster)
    for d in days:
        if d not in landed:  # the loser fails at once, in one line, naming the holder of the lease
            # (spark-submit merges the Python driver's stderr into stdout, next to the JVM's logs)
            out = results[d].stdout + results[d].stderr
            errs = [ln[ln.index("ecdctr: error: "):] for ln in out.splitlines() if "ecdctr: error: " in ln]
            assert len(errs) == 1 and "is being written by ecdctr:extract:complete:ad" in errs[0], \
                out[-2000:]
            assert results[d].returncode == 2
    assert landed, {d: r.stderr[-1500:] for d, r in results.items()}
    for d in landed:
        result = _result(results[d].stdout)
        assert result["rows"] > 0 and not result["skipped"]
    # the cluster's executors ran the tasks (not the driver): the master saw the applications
    apps = spark_cluster.status()["completedapps"]
    assert sum(a["name"] == "ecdctr" for a in apps) >= len(days)

    table = paths.complete_features("ad")
    dtab = DeltaTable(store.uri(table), storage_options=store.storage_options())
    history = dtab.history()
    # one commit per writer, none torn, and the first writer's feature-schema record
    assert sorted(h["version"] for h in history) == list(range(len(landed) + 1))
    assert sum(h["operation"] == "SET TBLPROPERTIES" for h in history) == 1
    assert delta.recorded_schema(store, table) == settings.features.feature_schema().identity
    for d in landed:
        assert dtab.transaction_version(complete_job(settings, "ad", d).app_id) is not None
    # nothing lost: every day of the landed windows holds exactly one feature row per raw impression
    want = sorted({p for d in landed for p in complete_window(settings, "ad", d).partitions()})
    got = delta.read(store, table)[0]
    assert sorted(set(got["dt"].to_pylist())) == want
    raw = delta.read(store, paths.raw_table("ad"), partitions=want)[0]
    assert got.num_rows == raw.num_rows
    assert got.group_by("dt").aggregate([("dt", "count")]).sort_by("dt").equals(
        raw.group_by("dt").aggregate([("dt", "count")]).sort_by("dt"))

    # the same steps on one machine give the same table, row for row: the DuckDB engine, whose rows
    # equal Spark local's (test_features_spark, test_extract) — seconds instead of a Spark run per day
    local = _settings(on_local).model_copy(deep=True)
    local.features.engine = "duckdb"
    for d in landed:
        extract_complete(local, open_store(on_local), "ad", d)
    ref = _sorted(delta.read(open_store(on_local), table)[0])
    assert _sorted(got).cast(ref.schema).equals(ref)  # the values (Spark declares every column nullable)
    for s in two_buckets:
        dt_ = DeltaTable(open_store(s).uri(table), storage_options=open_store(s).storage_options())
        p = dt_.protocol()
        assert (p.min_reader_version, p.min_writer_version) == DELTA_PROTOCOL and not p.writer_features
        assert not open_store(s).exists(paths.writer_lease(table))  # the lease was released
