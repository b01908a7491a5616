"""Helpers the DAG files use for wiring: default args, assets, and :func:`render_tier`, which
renders a tier's steps (:mod:`steps`) into operators: each runs its ``ecdctr`` argv in-process
through the CLI (embedded default), as a Kubernetes pod (production) or as a container on one
host's engine (:mod:`containers`), chosen by ``orchestration.execution``; sensors and branches run in Airflow in both."""

from __future__ import annotations

import datetime as dt
from typing import Any

from ecdctr_pipeline.core import paths
from ecdctr_pipeline.core.settings import Settings, load_settings
from ecdctr_pipeline.data.artifacts import ENV_RUN_ID
from ecdctr_pipeline.orchestration import callbacks, commands

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


def dag_kwargs(s: Settings, tier: str | None = None) -> dict[str, Any]:
    from airflow.sdk import Param

    extra: dict[str, Any] = {}
    if tier == "actr" and s.orchestration.actr_deadline_h:
        from airflow.sdk import AsyncCallback, DeadlineAlert, DeadlineReference

        h = s.orchestration.actr_deadline_h
        extra["deadline"] = DeadlineAlert(
            reference=DeadlineReference.DAGRUN_QUEUED_AT, interval=dt.timedelta(hours=h),
            callback=AsyncCallback(DEADLINE_CALLBACK, kwargs={"tier": tier, "hours": h}))
    return {**extra, "start_date": start_date(s), "catchup": s.orchestration.catchup,
            "max_active_runs": s.orchestration.max_active_runs, "default_args": default_args(s),
            # a forced rerun from the UI ("Trigger DAG w/ config") or REST ({"conf": {"force": true}}):
            # every step that takes --force gets it (re-extract, retrain, re-evaluate, re-export)
            "params": {"force": Param(False, type="boolean", title="force",
                                      description="redo each step's work although its result exists")}}


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
# where KubernetesPodOperator's XCom sidecar reads a pod's result (its PodDefaults.XCOM_MOUNT_PATH)
XCOM_RESULT_FILE = "/airflow/xcom/return.json"
ENV_RESULT_FILE = commands.ENV_RESULT_FILE


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
                {"name": "ECDCTR_ORCHESTRATION__EXECUTION", "value": "in_process"},
                # the step's JSON result, read back by KubernetesPodOperator (do_xcom_push) as the XCom
                {"name": ENV_RESULT_FILE, "value": XCOM_RESULT_FILE}],
        "resources": resources,
        "volumeMounts": [{"name": "config", "mountPath": "/etc/ecdctr", "readOnly": True}],
        "securityContext": {"runAsNonRoot": True, "allowPrivilegeEscalation": False},
    }
    if kind == "spark":  # the driver's own name and address, for the executors (commands.spark_on_kubernetes)
        container["env"] += [{"name": commands.ENV_POD_NAME, "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                             {"name": commands.ENV_POD_IP, "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}]
        container["ports"] = [{"name": "spark-driver", "containerPort": commands.SPARK_DRIVER_PORT},
                              {"name": "spark-blocks", "containerPort": commands.SPARK_BLOCK_MANAGER_PORT}]
    if k.secret_env:
        container["envFrom"] = [{"secretRef": {"name": k.secret_env, "optional": True}}]
    spec: dict[str, Any] = {
        "serviceAccountName": k.service_account,
        "restartPolicy": "Never",
        "containers": [container],
        "volumes": [{"name": "config", "configMap": {"name": k.config_map}}],
    }
    if k.image_pull_secrets:
        spec["imagePullSecrets"] = [{"name": n} for n in k.image_pull_secrets]
    if trainer:
        spec["nodeSelector"] = dict(k.node_selector)
        spec["tolerations"] = [dict(t) for t in k.tolerations]
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name.replace("_", "-"), "namespace": k.namespace,
                         "labels": {"app.kubernetes.io/name": "ecdctr", "app.kubernetes.io/component": kind}},
            "spec": spec}


def runs_as_job(s: Settings, kind: str, step_name: str) -> bool:
    """Whether a step runs as a multi-worker Indexed Job: the ``train_*`` steps when
    ``training.workers`` > 1 (evaluations stay single pods)."""
    return kind == "trainer" and step_name.startswith("train") and s.training.workers > 1


def job_manifest(s: Settings, *, name: str, command: list[str]) -> dict:
    """A trainer step with ``training.workers`` > 1: an Indexed Job of that many trainer pods
    (all started at once, none retried by Kubernetes: Airflow retries the step, and the trainer
    resumes from its checkpoint). Each pod finds the others through the headless Service
    ``orchestration.kubernetes.worker_service`` (the helm chart's ``training-workers-service``) as
    ``<job>-<index>.<service>``; worker 0 publishes."""
    from ecdctr_pipeline.modeling.distribute import ENV_JOB_NAME, ENV_PORT, ENV_SERVICE, ENV_WORKERS

    k, t = s.orchestration.kubernetes, s.training
    pod = pod_manifest(s, name=name, kind="trainer", command=command)
    container = pod["spec"]["containers"][0]
    # KubernetesJobOperator reads no result file: its pods have no XCom volume to write one to
    container["env"] = [e for e in container["env"] if e["name"] != ENV_RESULT_FILE]
    container["env"] += [
        {"name": ENV_JOB_NAME,
         "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['batch.kubernetes.io/job-name']"}}},
        {"name": ENV_SERVICE, "value": k.worker_service},
        {"name": ENV_WORKERS, "value": str(t.workers)},
        {"name": ENV_PORT, "value": str(t.worker_port)},
        {"name": "ECDCTR_TRAINING__DISTRIBUTION", "value": "multi_worker"},
    ]
    container["ports"] = [{"name": "collective", "containerPort": t.worker_port}]
    labels = dict(pod["metadata"]["labels"], **{"app.kubernetes.io/component": "trainer-worker"})
    return {"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": pod["metadata"]["name"], "namespace": k.namespace, "labels": labels},
            "spec": {"completionMode": "Indexed", "completions": t.workers, "parallelism": t.workers,
                     "backoffLimit": 0,
                     "template": {"metadata": {"labels": labels},
                                  "spec": dict(pod["spec"], subdomain=k.worker_service)}}}


def worker_service_manifest(s: Settings) -> dict:
    """The headless Service of multi-worker trainer Jobs (rendered by the helm chart too)."""
    k, t = s.orchestration.kubernetes, s.training
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": k.worker_service, "namespace": k.namespace,
                         "labels": {"app.kubernetes.io/name": "ecdctr"}},
            "spec": {"clusterIP": "None", "publishNotReadyAddresses": True,
                     "selector": {"app.kubernetes.io/name": "ecdctr",
                                  "app.kubernetes.io/component": "trainer-worker"},
                     "ports": [{"name": "collective", "port": t.worker_port, "targetPort": t.worker_port}]}}


DEADLINE_CALLBACK = "ecdctr_pipeline.orchestration.callbacks.deadline_missed"
RUN_ID = "{{ run_id }}"  # every step's ECDCTR_RUN_ID: the manifests it publishes name the DAG run


def run_step(argv: list[str], run_id: str | None = None):
    """An in-process step: the rendered argv through the CLI entry point; its JSON result is the
    XCom. A missing upstream artifact or an I/O error may resolve itself (Airflow retries); any
    other pipeline error (a gate, a calendar or lineage violation) fails the task at once.
    ``run_id``: the DAG run's, set as ECDCTR_RUN_ID while the step runs (its manifests record it)."""
    from airflow.sdk.exceptions import AirflowFailException

    from ecdctr_pipeline.cli.verbs import execute
    from ecdctr_pipeline.core.errors import ArtifactMissingError, EcdctrError
    from ecdctr_pipeline.data.artifacts import run_id_env

    try:
        with run_id_env(run_id):
            rc, result = execute(list(argv))
    except (ArtifactMissingError, OSError):
        raise
    except EcdctrError as exc:
        raise AirflowFailException(str(exc)) from None
    if rc != 0:
        raise AirflowFailException(f"`ecdctr {' '.join(argv)}` exited {rc}")
    return result


def run_branch(argv: list[str], condition: str) -> bool:
    """A branch step: the check's JSON result decides whether the run goes on."""
    from ecdctr_pipeline.cli.verbs import execute

    _, result = execute(list(argv))
    return bool(result[condition])


def _operator(step, s: Settings, tier: str):
    from ecdctr_pipeline.orchestration import steps as st

    o = s.orchestration
    common = {"task_id": step.name, "doc": step.doc}
    if step.kind == "trainer" and o.trainer_pool:
        common["pool"] = o.trainer_pool
    if step.retries is not None:
        common["retries"] = step.retries
    outlets = [asset(s, *ASSETS[step.outlet])] if step.outlet else []
    argv = list(st.argv_of(step))
    if step.kind == "sensor":
        from ecdctr_pipeline.orchestration.sensors import StepSensor

        return StepSensor(argv=argv, mode=o.sensor_mode, poke_interval=o.sensor_poke_interval_s,
                          timeout=(step.timeout_s or st._sensor_timeout)(s), **common)
    if step.kind == "branch":
        from airflow.providers.standard.operators.python import ShortCircuitOperator

        return ShortCircuitOperator(python_callable=run_branch, op_args=[argv, step.condition], **common)
    # the container command is the same in both production modes (a test keeps it so)
    command = commands.pod_command(step.kind, argv, spark_master=s.spark.master, kubernetes=o.kubernetes)
    if o.execution == "docker":
        from ecdctr_pipeline.orchestration import containers

        return containers.operator(s, tier=tier, step=step, command=command, outlets=outlets, common=common,
                                   workers=s.training.workers if runs_as_job(s, step.kind, step.name) else 1)
    if o.execution == "kubernetes":
        from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
        from kubernetes.client import ApiClient

        k = o.kubernetes
        # a GPU node may have to scale up before the pod is scheduled, then pull a large image
        waits = {"schedule_timeout_seconds": k.schedule_timeout_s, "startup_timeout_seconds": k.startup_timeout_s}
        if runs_as_job(s, step.kind, step.name):
            from airflow.providers.cncf.kubernetes.operators.job import KubernetesJobOperator

            class _Job:  # ApiClient.deserialize reads .data
                data = __import__("json").dumps(job_manifest(s, name=f"{tier}-{step.name}", command=command))

            return KubernetesJobOperator(namespace=o.kubernetes.namespace, full_job_spec=ApiClient().deserialize(
                _Job(), "V1Job"), wait_until_job_complete=True, get_logs=True, do_xcom_push=False, outlets=outlets,
                env_vars={ENV_RUN_ID: RUN_ID}, **waits, **common)
        manifest = pod_manifest(s, name=f"{tier}-{step.name}", kind=step.kind, command=command)

        class _Data:  # ApiClient.deserialize reads .data
            data = __import__("json").dumps(manifest)

        pod = ApiClient().deserialize(_Data(), "V1Pod")
        return KubernetesPodOperator(namespace=o.kubernetes.namespace, full_pod_spec=pod, cmds=command[:1],
                                     arguments=command[1:], get_logs=True, on_finish_action="delete_succeeded_pod",
                                     do_xcom_push=True, outlets=outlets, env_vars={ENV_RUN_ID: RUN_ID}, **waits,
                                     **common)
    from airflow.providers.standard.operators.python import PythonOperator

    return PythonOperator(python_callable=run_step, op_args=[argv], op_kwargs={"run_id": RUN_ID}, outlets=outlets,
                          **common)


def render_tier(tier: str, s: Settings) -> list:
    """Inside a ``with DAG(...)`` block: the tier's steps as operators, chained in order."""
    from airflow.sdk import chain

    from ecdctr_pipeline.orchestration.steps import TIERS

    ops = [_operator(step, s, tier) for step in TIERS[tier].steps]
    chain(*ops)
    return ops
