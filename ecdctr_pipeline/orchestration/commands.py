"""The container command of a step: the ``ecdctr`` argv of :mod:`steps`, behind the entry point
of the image its kind runs in. The DAGs' production operators, ``pods.py`` and the images'
entry points use these; in-process execution runs the argv itself."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ecdctr_pipeline.data.spark import SPARK_CLI_JOB

if TYPE_CHECKING:
    from ecdctr_pipeline.core.settings import KubernetesSettings

SPARK_JOBS_DIR = "/opt/ecdctr/spark_jobs"
TRAINER_ENTRYPOINT = ["ecdctr"]
SPARK_ENTRYPOINT = ["spark-submit"]
# a Spark pod's own name and address, from the downward API (airflow_support.pod_manifest);
# Kubernetes expands $(NAME) in a container's args from its environment
ENV_POD_NAME, ENV_POD_IP = "ECDCTR_POD_NAME", "ECDCTR_POD_IP"
SPARK_DRIVER_PORT, SPARK_BLOCK_MANAGER_PORT = 7078, 7079
ENV_RESULT_FILE = "ECDCTR_RESULT_FILE"  # cli/verbs.py's, which writes the step's JSON result there


def spark_on_kubernetes(k: KubernetesSettings) -> list[str]:
    """``spark-submit`` flags for a ``k8s://`` master: the step's pod is the driver (client mode,
    the same CLI as in-process), executors are pods of the Spark image created through the
    ServiceAccount (the chart's Role allows it), owned by the driver pod (deleted with it) and
    reaching it at the pod's own address on fixed ports (no Service needed)."""
    conf = {
        "spark.kubernetes.namespace": k.namespace,
        "spark.kubernetes.container.image": k.spark_image,
        "spark.kubernetes.container.image.pullPolicy": k.image_pull_policy,
        "spark.kubernetes.authenticate.driver.serviceAccountName": k.service_account,
        "spark.kubernetes.driver.pod.name": f"$({ENV_POD_NAME})",
        "spark.driver.host": f"$({ENV_POD_IP})",
        "spark.driver.bindAddress": "0.0.0.0",
        "spark.driver.port": str(SPARK_DRIVER_PORT),
        "spark.blockManager.port": str(SPARK_BLOCK_MANAGER_PORT),
    }
    if k.image_pull_secrets:
        conf["spark.kubernetes.container.image.pullSecrets"] = ",".join(k.image_pull_secrets)
    return ["--deploy-mode", "client", *(a for kv in sorted(conf.items()) for a in ("--conf", "=".join(kv)))]


def pod_command(kind: str, argv: list[str], *, spark_master: str,
                kubernetes: KubernetesSettings | None = None) -> list[str]:
    """``ecdctr ARGV`` in the trainer image; ``spark-submit --master M .../ecdctr_cli.py ARGV`` in the
    Spark image (the driver runs the same CLI, so the argv is the same as in-process), with
    :func:`spark_on_kubernetes`'s flags when M is ``k8s://`` and ``kubernetes`` is given."""
    if kind == "spark":
        k8s = spark_on_kubernetes(kubernetes) if kubernetes is not None and spark_master.startswith("k8s://") else []
        return [*SPARK_ENTRYPOINT, "--master", spark_master, *k8s, f"{SPARK_JOBS_DIR}/{SPARK_CLI_JOB}", *argv]
    if kind in ("trainer", "job"):
        return [*TRAINER_ENTRYPOINT, *argv]
    raise ValueError(f"a {kind} step does not run in a pod")
