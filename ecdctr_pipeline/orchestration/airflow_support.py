"""Helpers the DAG files use for wiring: default args, assets, and :func:`step`, which turns one
pipeline step into an in-process task (embedded default) or a Kubernetes pod (production),
chosen by ``orchestration.execution``; the command line is the same in both."""

from __future__ import annotations

import datetime as dt
from typing import Any

from .. import paths
from ..settings import Settings, load_settings
from . import callbacks, commands

TEMPLATE_DS = "{{ ds }}"


def settings() -> Settings:
    return load_settings()


def start_date(s: Settings) -> dt.datetime:
    return dt.datetime.fromisoformat(s.orchestration.start_date).replace(tzinfo=dt.timezone.utc)


def default_args(s: Settings) -> dict[str, Any]:
    o = s.orchestration
    return {
        "owner": o.owner,
        "retries": o.retries,
        "retry_delay": dt.timedelta(seconds=o.retry_delay_s),
        "retry_exponential_backoff": True,
        "max_retry_delay": dt.timedelta(seconds=o.max_retry_delay_s),
        "execution_timeout": dt.timedelta(seconds=o.task_timeout_s),
        "on_failure_callback": callbacks.on_failure,
    }


def dag_kwargs(s: Settings) -> dict[str, Any]:
    return {"start_date": start_date(s), "catchup": s.orchestration.catchup,
            "max_active_runs": s.orchestration.max_active_runs, "default_args": default_args(s)}


def asset(s: Settings, prefix: str, name: str):
    """An Airflow Asset for a family of artifacts (for lineage in the Airflow UI).

    Named, not addressed by the store URI: the same Airflow metadata database keeps one asset
    per family even when the store root changes (Airflow marks an asset whose name is reused
    with another URI inactive and fails the task). The store prefix is in the asset's extra."""
    from airflow.sdk import Asset

    return Asset(name=name, uri=f"ecdctr://{prefix}", extra={"store_prefix": prefix})


ASSETS = {"tpm": (paths.TPM_SETS, "ecdctr_tpm_embedding_sets"), "cpm": (paths.CPM_CHECKPOINTS, "ecdctr_cpm_checkpoints"),
          "actr": (paths.ACTR_MODELS, "ecdctr_actr_models"), "serving": (paths.SERVING_ACTR, "ecdctr_serving_versions")}


# ------------------------------------------------------------------ pods
def pod_manifest(s: Settings, *, name: str, kind: str, command: list[str]) -> dict:
    """The Kubernetes Pod a production step runs in (also validated by the deployment tests).

    ``kind``: ``trainer`` (trainer image, GPU), ``job`` (trainer image, no GPU: gates and
    evaluations that read tables and manifests) or ``spark`` (spark-submit in the Spark image).
    """
    if kind not in ("trainer", "job", "spark"):
        raise ValueError(f"unknown step kind {kind!r}: expected trainer, job or spark")
    k = s.orchestration.kubernetes
    trainer = kind == "trainer"
    resources = {sec: dict(v) for sec, v in (k.trainer_resources if trainer else k.spark_resources).items()}
    if trainer and k.gpus:
        resources.setdefault("limits", {})["nvidia.com/gpu"] = str(k.gpus)
        resources.setdefault("requests", {})["nvidia.com/gpu"] = str(k.gpus)
    container = {
        "name": "base",
        "image": k.spark_image if kind == "spark" else k.trainer_image,
        "imagePullPolicy": k.image_pull_policy,
        "command": command[:1],
        "args": command[1:],
        "env": [{"name": "ECDCTR_CONFIG", "value": "/etc/ecdctr/config.yaml"},
                {"name": "ECDCTR_ORCHESTRATION__EXECUTION", "value": "in_process"}],
        "resources": resources,
        "volumeMounts": [{"name": "config", "mountPath": "/etc/ecdctr", "readOnly": True}],
        "securityContext": {"runAsNonRoot": True, "allowPrivilegeEscalation": False},
    }
    if k.secret_env:
        container["envFrom"] = [{"secretRef": {"name": k.secret_env, "optional": True}}]
    spec: dict[str, Any] = {
        "serviceAccountName": k.service_account,
        "restartPolicy": "Never",
        "containers": [container],
        "volumes": [{"name": "config", "configMap": {"name": k.config_map}}],
    }
    if trainer:
        spec["nodeSelector"] = dict(k.node_selector)
        spec["tolerations"] = [dict(t) for t in k.tolerations]
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name.replace("_", "-"), "namespace": k.namespace,
                         "labels": {"app.kubernetes.io/name": "ecdctr", "app.kubernetes.io/component": kind}},
            "spec": spec}


def step(task_id: str, s: Settings, *, kind: str, command: list[str], call: str, args: tuple = (),
         outlets: list | None = None):
    """One pipeline step: ``tasks.<call>(*args, ds)`` in-process, or ``command`` in a pod."""
    if s.orchestration.execution == "kubernetes":
        from kubernetes.client import ApiClient
        from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator

        manifest = pod_manifest(s, name=task_id, kind=kind, command=command)

        class _Data:  # ApiClient.deserialize reads .data
            data = __import__("json").dumps(manifest)

        pod = ApiClient().deserialize(_Data(), "V1Pod")
        return KubernetesPodOperator(task_id=task_id, namespace=s.orchestration.kubernetes.namespace,
                                     full_pod_spec=pod, cmds=command[:1], arguments=command[1:],
                                     get_logs=True, on_finish_action="delete_succeeded_pod",
                                     do_xcom_push=False, outlets=outlets or [])
    from airflow.sdk import task

    from . import tasks

    fn = getattr(tasks, call)

    def run(ds=None):
        from airflow.sdk.exceptions import AirflowFailException

        from ..errors import ArtifactMissingError, EcdctrError

        try:
            return fn(*args, ds)
        except (ArtifactMissingError, OSError):
            raise  # may resolve itself: let Airflow retry
        except EcdctrError as exc:  # a gate, a calendar or lineage violation: retrying cannot help
            raise AirflowFailException(str(exc)) from None

    run.__name__ = task_id
    return task(task_id=task_id, outlets=outlets or [])(run)()
