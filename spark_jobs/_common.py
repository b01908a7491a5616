"""Shared argument handling for the Spark job files."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Callable


def run_job(argv: list[str] | None, description: str, add_args: Callable[[argparse.ArgumentParser], None],
            body: Callable) -> int:
    from ecdctr_pipeline.errors import EcdctrError
    from ecdctr_pipeline.settings import load_settings

    p = argparse.ArgumentParser(description=description)
    p.add_argument("--config", metavar="FILE")
    p.add_argument("--force", action="store_true", help="recompute even if built from the same raw version")
    add_args(p)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = load_settings(args.config)
        spark = None
        try:  # under spark-submit the master comes from spark-submit, not from settings
            from pyspark import SparkConf

            if SparkConf().contains("spark.master"):
                from pyspark.sql import SparkSession

                spark = SparkSession.builder.getOrCreate()
        except Exception:  # noqa: BLE001 - no JVM yet: get_spark starts one from settings
            spark = None
        result = body(settings, args, spark)
        print(json.dumps(result.to_dict()))
        return 0
    except EcdctrError as exc:
        print(f"ecdctr: error: {exc}", file=sys.stderr)
        return exc.exit_code
