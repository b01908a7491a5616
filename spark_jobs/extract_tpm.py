"""spark-submit spark_jobs/extract_tpm.py --as-of YYYY-MM[-01]: features/tpm for a TPM run."""

from __future__ import annotations

import sys

from spark_jobs._common import run_job


def main(argv: list[str] | None = None) -> int:
    from ecdctr_pipeline.extract import extract_tpm

    return run_job(argv, __doc__, lambda p: p.add_argument("--as-of", required=True, metavar="MONTH"),
                   lambda s, a, spark: extract_tpm(s, a.as_of, force=a.force, spark=spark))


if __name__ == "__main__":
    sys.exit(main())
