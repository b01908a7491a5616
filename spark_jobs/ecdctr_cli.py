"""``spark-submit spark_jobs/ecdctr_cli.py ARGV``: the ``ecdctr`` command line as a Spark application.

A Spark step's pod runs the same argv as the in-process task (``extract complete --domain ad
--as-of D --json``); only the driver differs: spark-submit starts it with the cluster's master,
and the extraction reuses that context (``ecdctr_pipeline.data.spark.get_spark``) and adds the Delta
and s3a configuration. Errors are the CLI's: one line ``ecdctr: error: ...`` and a non-zero exit.
"""

from __future__ import annotations

import sys

from ecdctr_pipeline.cli.verbs import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
