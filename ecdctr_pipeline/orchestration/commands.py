"""The command line of every pipeline step: one source of truth for the DAGs' production
operators, the docker images' entry points, and the tests that tie them together."""

from __future__ import annotations

SPARK_JOBS_DIR = "/opt/ecdctr/spark_jobs"
TRAINER_ENTRYPOINT = ["ecdctr"]
SPARK_ENTRYPOINT = ["spark-submit"]


def train_command(tier: str, as_of: str) -> list[str]:
    if tier not in ("tpm", "cpm", "actr"):
        raise ValueError(f"unknown tier {tier!r}")
    return [*TRAINER_ENTRYPOINT, "train", tier, "--as-of", as_of, "--json"]


def export_command(as_of: str) -> list[str]:
    return [*TRAINER_ENTRYPOINT, "export", "--as-of", as_of, "--json"]


def evaluate_command(as_of: str, tier: str = "actr") -> list[str]:
    if tier not in ("cpm", "actr"):
        raise ValueError(f"unknown tier {tier!r}")
    return [*TRAINER_ENTRYPOINT, "evaluate", "--tier", tier, "--as-of", as_of, "--json"]


def gate_command(tier: str, as_of: str) -> list[str]:
    """The data-quality gate of a tier's run (the DAG's ``quality_gate`` task)."""
    if tier not in ("tpm", "cpm", "actr"):
        raise ValueError(f"unknown tier {tier!r}")
    return [*TRAINER_ENTRYPOINT, "gate", tier, "--as-of", as_of, "--json"]


def spark_command(job: str, master: str, args: list[str]) -> list[str]:
    if job not in ("extract_tpm", "extract_complete"):
        raise ValueError(f"unknown Spark job {job!r}")
    return [*SPARK_ENTRYPOINT, "--master", master, f"{SPARK_JOBS_DIR}/{job}.py", *args]
