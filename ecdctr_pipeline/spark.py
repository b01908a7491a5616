"""Spark session for the feature jobs: ``local[*]`` by default, a master URL from settings."""

from __future__ import annotations

import os
import sys

from .settings import Settings


def spark_conf(settings: Settings) -> dict[str, str]:
    s = settings.spark
    conf = {
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
        "spark.sql.shuffle.partitions": str(s.shuffle_partitions),
        "spark.driver.memory": s.driver_memory,
        "spark.ui.enabled": "false",
        "spark.sql.sources.partitionOverwriteMode": "static",
        "spark.sql.parquet.compression.codec": "zstd",
    }
    if s.s3_access == "s3a" and settings.store.root.startswith("s3://"):
        st = settings.store
        conf["spark.hadoop.fs.s3a.aws.credentials.provider"] = (
            "com.amazonaws.auth.DefaultAWSCredentialsProviderChain")
        if st.endpoint_url:
            conf["spark.hadoop.fs.s3a.endpoint"] = st.endpoint_url
            conf["spark.hadoop.fs.s3a.path.style.access"] = "true"
        conf["spark.hadoop.fs.s3a.endpoint.region"] = st.region
    conf.update(s.extra_conf)
    return conf


def get_spark(settings: Settings):
    """A SparkSession for ``settings`` (reused if one is already running in this process)."""
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    if settings.spark.master.startswith("local"):
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.master(settings.spark.master).appName(settings.spark.app_name)
    for k, v in spark_conf(settings).items():
        builder = builder.config(k, v)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    return spark
