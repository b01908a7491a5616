"""spark-submit spark_jobs/extract_complete.py --domain {natural,ad} --as-of DATE: complete features."""

from __future__ import annotations

import sys

from spark_jobs._common import run_job


def _args(p):
    p.add_argument("--domain", required=True, choices=["natural", "ad"])
    p.add_argument("--as-of", required=True, metavar="DATE")


def main(argv: list[str] | None = None) -> int:
    from ecdctr_pipeline.extract import extract_complete

    return run_job(argv, __doc__, _args,
                   lambda s, a, spark: extract_complete(s, a.domain, a.as_of, force=a.force, spark=spark))


if __name__ == "__main__":
    sys.exit(main())
