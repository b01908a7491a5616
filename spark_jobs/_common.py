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
        # the extraction starts its session through ecdctr_pipeline.spark.get_spark, which
        # reuses spark-submit's context (its master) and adds the Delta/s3a configuration
        result = body(settings, args, None)
        print(json.dumps(result.to_dict()))
        return 0
    except EcdctrError as exc:
        print(f"ecdctr: error: {exc}", file=sys.stderr)
        return exc.exit_code
