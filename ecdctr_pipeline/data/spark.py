"""Spark sessions for the feature jobs, with the Delta Lake connector and S3 through ``s3a``.

One function builds the configuration (:func:`spark_conf`) and it is used three ways, so a
laptop, a standalone cluster and a Kubernetes cluster run the same session:

* :func:`get_spark` starts (or reuses) an in-process session, ``local[*]`` by default;
* :func:`submit_conf` gives the ``--conf`` flags ``spark-submit`` needs for the same session
  (``spark_jobs/`` then only calls :func:`get_spark`, which reuses spark-submit's context);
* :func:`configure_store` applies the store's ``s3a`` settings to a running session (per
  bucket), so a session started for one store can serve another.

The pinned jars (``jvm/pom.xml``, checked against ``jvm/jars.sha256`` by ``make jars``) are put
on the driver's and executors' class path from ``spark.jars_dir``; nothing is downloaded at
run time (no ``spark.jars.packages``).
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from pathlib import Path

from ecdctr_pipeline.core.errors import ConfigError
from ecdctr_pipeline.core.settings import Settings, StoreSettings

# The jars the Spark jobs cannot run without (by file-name prefix), for a clear error early.
REQUIRED_JARS = ("delta-spark_", "delta-storage-", "hadoop-aws-", "bundle-")
# The Delta protocol every writer of the project's tables keeps to: delta-spark 4.4 and
# delta-rs 1.6 both read and write it (no table features).
DELTA_PROTOCOL = (1, 2)
SPARK_CLI_JOB = "ecdctr_cli.py"  # spark_jobs/ecdctr_cli.py: the ecdctr step verbs as a spark-submit application
_CHECKOUT_JARS = Path(__file__).resolve().parents[2] / "jvm" / "jars"


def jars_dir(settings: Settings) -> Path | None:
    """The folder of pinned jars to add to the class path (None: already on it)."""
    d = settings.spark.jars_dir
    if d == "classpath":
        return None
    return Path(d).expanduser().resolve() if d is not None else _CHECKOUT_JARS


def check_jars(settings: Settings) -> Path | None:
    """The jars folder, checked: a missing folder or jar is one line naming it."""
    d = jars_dir(settings)
    if d is None:
        return None
    if not d.is_dir():
        raise ConfigError(f"spark.jars_dir: {d} does not exist (run `make jars`, or set spark.jars_dir)")
    names = [p.name for p in d.glob("*.jar")]
    for prefix in REQUIRED_JARS:
        if not any(n.startswith(prefix) for n in names):
            raise ConfigError(f"spark.jars_dir: no {prefix}*.jar in {d} (run `make jars`)")
    return d


def s3a_conf(store: StoreSettings, bucket: str | None = None) -> dict[str, str]:
    """Hadoop ``fs.s3a.*`` options for ``store`` (per bucket when ``bucket`` is given)."""
    pre = f"fs.s3a.bucket.{bucket}." if bucket else "fs.s3a."
    conf = {pre + "endpoint.region": store.region}
    endpoint = store.endpoint_url or os.environ.get("AWS_ENDPOINT_URL")
    if endpoint:
        conf[pre + "endpoint"] = endpoint
        conf[pre + "path.style.access"] = "true"
        conf[pre + "connection.ssl.enabled"] = str(endpoint.startswith("https://")).lower()
    if store.access_key_id and store.secret_access_key:
        conf[pre + "access.key"] = store.access_key_id.get_secret_value()
        conf[pre + "secret.key"] = store.secret_access_key.get_secret_value()
    return conf


def spark_conf(settings: Settings, *, include_master_settings: bool = True) -> dict[str, str]:
    """The session's configuration: Delta connector, pinned protocol, s3a, class path."""
    s = settings.spark
    conf = {
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
        "spark.sql.shuffle.partitions": str(s.shuffle_partitions),
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        "spark.sql.parquet.compression.codec": "zstd",
        # Delta Lake through delta-spark
        "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
        "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
        "spark.databricks.delta.properties.defaults.minReaderVersion": str(DELTA_PROTOCOL[0]),
        "spark.databricks.delta.properties.defaults.minWriterVersion": str(DELTA_PROTOCOL[1]),
        "spark.databricks.delta.snapshotPartitions": str(s.shuffle_partitions),
        # VACUUM lists files with this many tasks (default 10000: minutes on a small cluster)
        "spark.sql.sources.parallelPartitionDiscovery.parallelism": str(max(s.shuffle_partitions, 8)),
        "spark.databricks.delta.schema.autoMerge.enabled": "false",
        # s3a:// is served by hadoop-aws; Delta's log store for it is single-driver (see extract.py)
        "spark.hadoop.fs.s3a.impl": "org.apache.hadoop.fs.s3a.S3AFileSystem",
    }
    if include_master_settings:
        conf["spark.driver.memory"] = s.driver_memory
    if settings.store.root.startswith("s3://"):
        conf.update({"spark.hadoop." + k: v for k, v in s3a_conf(settings.store).items()})
    d = jars_dir(settings)
    if d is not None:
        cp = str(d / "*")
        conf["spark.driver.extraClassPath"] = cp
        conf["spark.executor.extraClassPath"] = cp
    conf.update(s.extra_conf)
    return conf


def submit_conf(settings: Settings) -> list[str]:
    """``--conf k=v`` flags for ``spark-submit`` giving the session :func:`get_spark` builds."""
    out: list[str] = []
    for k, v in spark_conf(settings).items():
        if k.endswith((".access.key", ".secret.key")):
            continue  # never on a command line: the job reads them from its settings
        out += ["--conf", f"{k}={v}"]
    return out


def configure_store(spark, store: StoreSettings) -> None:
    """Make a running session reach ``store`` through s3a (per-bucket Hadoop options)."""
    if not store.root.startswith("s3://"):
        return
    bucket = store.root[len("s3://"):].split("/", 1)[0]
    hconf = spark.sparkContext._jsc.hadoopConfiguration()
    for k, v in s3a_conf(store, bucket).items():
        hconf.set(k, v)
        spark.conf.set(k, v)


def under_spark_submit() -> bool:
    """True in a Python driver started by ``spark-submit`` (its JVM is already running)."""
    return bool(os.environ.get("PYSPARK_GATEWAY_PORT"))


def get_spark(settings: Settings):
    """A SparkSession for ``settings``: reused if one is running in this process (as under
    ``spark-submit``, whose master wins), else started from ``spark.master``."""
    check_jars(settings)
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    if settings.spark.master.startswith("local"):
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    from pyspark.sql import SparkSession

    # py4j logs each closed gateway connection at INFO, also from finalizers at interpreter exit,
    # after the log streams are closed ("--- Logging error ---"): its warnings are enough
    logging.getLogger("py4j").setLevel(logging.WARNING)
    # pyspark 4.2 warns on every pandas >= 3 import; the Spark jobs use no pandas interop that it
    # concerns (the tests run them on the pinned pandas)
    warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas", category=FutureWarning)
    builder = SparkSession.builder.appName(settings.spark.app_name)
    if not under_spark_submit():  # spark-submit sets the master (and class path) itself
        builder = builder.master(settings.spark.master)
    for k, v in spark_conf(settings).items():
        builder = builder.config(k, v)
    spark = builder.getOrCreate()
    # quiet (the console at WARNING): a failed task's stack is not printed, the command's one-line
    # error names what failed (`-v` or ECDCTR_LOG_LEVEL=INFO, as the images set, show Spark's ERROR lines)
    spark.sparkContext.setLogLevel("ERROR" if logging.getLogger().getEffectiveLevel() <= logging.INFO else "FATAL")
    if spark.conf.get("spark.sql.extensions", "") != "io.delta.sql.DeltaSparkSessionExtension":
        raise ConfigError("the running Spark session has no Delta extension "
                          "(spark.sql.extensions): start it through ecdctr_pipeline.data.spark.get_spark")
    configure_store(spark, settings.store)
    return spark
