"""The container command of a step: the ``ecdctr`` argv of :mod:`steps`, behind the entry point
of the image its kind runs in. The DAGs' production operators, ``pods.py`` and the images'
entry points use these; in-process execution runs the argv itself."""

from __future__ import annotations

from ecdctr_pipeline.data.spark import SPARK_CLI_JOB

SPARK_JOBS_DIR = "/opt/ecdctr/spark_jobs"
TRAINER_ENTRYPOINT = ["ecdctr"]
SPARK_ENTRYPOINT = ["spark-submit"]


def pod_command(kind: str, argv: list[str], *, spark_master: str) -> list[str]:
    """``ecdctr ARGV`` in the trainer image; ``spark-submit --master M .../ecdctr_cli.py ARGV`` in the
    Spark image (the driver runs the same CLI, so the argv is the same as in-process)."""
    if kind == "spark":
        return [*SPARK_ENTRYPOINT, "--master", spark_master, f"{SPARK_JOBS_DIR}/{SPARK_CLI_JOB}", *argv]
    if kind in ("trainer", "job"):
        return [*TRAINER_ENTRYPOINT, *argv]
    raise ValueError(f"a {kind} step does not run in a pod")
