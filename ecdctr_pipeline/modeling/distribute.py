"""Where training runs: one device, ``MirroredStrategy`` over the GPUs of one pod, or
``MultiWorkerMirroredStrategy`` across the pods of a Kubernetes Indexed Job.

``training.distribution`` chooses: ``none``, ``mirrored``, ``multi_worker``, or ``auto`` —
multi-worker when the environment describes more than one worker (``TF_CONFIG``, or
``TRAINER_WORKER_HOSTS`` with the pod's ``JOB_COMPLETION_INDEX``), mirrored when the pod sees
more than one GPU, else the default single-device strategy.

In an Indexed Job (:func:`ecdctr_pipeline.orchestration.airflow_support.job_manifest`) each pod
gets its Job's name (downward API), the headless Service, the number of workers and the port;
Kubernetes sets ``JOB_COMPLETION_INDEX`` and names the pod ``<job>-<index>`` under the Service,
so :func:`tf_config` builds every worker's stable DNS name (``TRAINER_WORKER_HOSTS`` may list
them instead). Worker 0 is the chief: it alone writes checkpoints and publishes.

Each input pipeline reads its own shard of the window's files
(:meth:`~ecdctr_pipeline.modeling.streaming.WindowSource.shard`); the global batch is the
tier's ``batch_size``, split evenly between the replicas.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any, Mapping

ENV_WORKER_HOSTS = "TRAINER_WORKER_HOSTS"
ENV_JOB_INDEX = "JOB_COMPLETION_INDEX"  # set by Kubernetes in an Indexed Job's pods
# set by the rendered Job (orchestration.airflow_support.job_manifest)
ENV_JOB_NAME, ENV_SERVICE, ENV_WORKERS, ENV_PORT = "TRAINER_JOB_NAME", "TRAINER_SERVICE", "TRAINER_WORKERS", "TRAINER_PORT"
KINDS = ("auto", "none", "mirrored", "multi_worker")


class DistributionError(ValueError):
    """A distribution setting the environment cannot satisfy."""


def tf_config(environ: Mapping[str, str] | None = None) -> dict | None:
    """The cluster this process belongs to: ``TF_CONFIG`` when set, else one built from
    ``TRAINER_WORKER_HOSTS`` + ``JOB_COMPLETION_INDEX``; None for a single process."""
    env = os.environ if environ is None else environ
    if env.get("TF_CONFIG"):
        try:
            cfg = json.loads(env["TF_CONFIG"])
            workers = cfg["cluster"]["worker"]
            index = int(cfg["task"]["index"])
        except (ValueError, KeyError, TypeError) as exc:
            raise DistributionError(f"TF_CONFIG is not a worker cluster spec: {exc}") from None
        if not 0 <= index < len(workers):
            raise DistributionError(f"TF_CONFIG task index {index} outside 0..{len(workers) - 1}")
        return cfg
    hosts = [h.strip() for h in env.get(ENV_WORKER_HOSTS, "").split(",") if h.strip()]
    if not hosts and env.get(ENV_JOB_NAME):  # an Indexed Job: <job>-<index>.<headless service>:<port>
        try:
            n, port = int(env.get(ENV_WORKERS, "")), int(env.get(ENV_PORT, ""))
        except ValueError:
            raise DistributionError(f"{ENV_JOB_NAME} is set but {ENV_WORKERS}={env.get(ENV_WORKERS)!r} / "
                                    f"{ENV_PORT}={env.get(ENV_PORT)!r} are not integers") from None
        service = env.get(ENV_SERVICE) or ""
        if n < 1 or not service:
            raise DistributionError(f"{ENV_JOB_NAME} is set but {ENV_WORKERS} < 1 or {ENV_SERVICE} is empty")
        hosts = [f"{env[ENV_JOB_NAME]}-{i}.{service}:{port}" for i in range(n)]
    if not hosts:
        return None
    raw = env.get(ENV_JOB_INDEX)
    if raw is None or not raw.isdigit() or int(raw) >= len(hosts):
        raise DistributionError(f"{ENV_WORKER_HOSTS} names {len(hosts)} worker(s) but {ENV_JOB_INDEX} is "
                                f"{raw!r} (expected 0..{len(hosts) - 1})")
    return {"cluster": {"worker": hosts}, "task": {"type": "worker", "index": int(raw)}}


@dataclass(frozen=True)
class Placement:
    """The strategy a trainer runs under and this process's place in it."""

    kind: str  # none | mirrored | multi_worker
    strategy: Any
    worker: int
    workers: int

    @property
    def is_chief(self) -> bool:
        return self.worker == 0

    @property
    def replicas(self) -> int:
        return int(self.strategy.num_replicas_in_sync)

    def describe(self) -> str:
        if self.kind == "none":
            return "one device"
        return f"{self.kind}: {self.replicas} replica(s), worker {self.worker + 1}/{self.workers}"


_PLACEMENT: dict[tuple, Placement] = {}


def split_cpu(n: int) -> None:
    """Split the host CPU into ``n`` logical devices (tests and benchmarks of mirrored training on
    a machine without GPUs). Must run before TensorFlow initialises its devices."""
    import tensorflow as tf

    cpus = tf.config.list_physical_devices("CPU")
    tf.config.set_logical_device_configuration(cpus[0], [tf.config.LogicalDeviceConfiguration()] * n)


def placement(kind: str = "auto", environ: Mapping[str, str] | None = None) -> Placement:
    """The process's :class:`Placement` for ``training.distribution`` = ``kind`` (created once per
    process: TensorFlow allows one multi-worker runtime)."""
    import tensorflow as tf

    if kind not in KINDS:
        raise DistributionError(f"unknown training.distribution {kind!r}: expected one of {', '.join(KINDS)}")
    cfg = tf_config(environ)
    if kind == "auto":
        if cfg is not None and len(cfg["cluster"]["worker"]) > 1:
            kind = "multi_worker"
        elif len(tf.config.list_logical_devices("GPU")) > 1:
            kind = "mirrored"
        else:
            kind = "none"
    key = (kind, json.dumps(cfg, sort_keys=True))
    if key in _PLACEMENT:
        return _PLACEMENT[key]
    if kind == "none":
        p = Placement("none", tf.distribute.get_strategy(), 0, 1)
    elif kind == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        devices = [d.name for d in (gpus or tf.config.list_logical_devices("CPU"))]
        p = Placement("mirrored", tf.distribute.MirroredStrategy(devices=devices), 0, 1)
    else:
        if cfg is None:
            raise DistributionError("training.distribution is multi_worker but neither TF_CONFIG nor "
                                    f"{ENV_WORKER_HOSTS} describes the workers")
        os.environ["TF_CONFIG"] = json.dumps(cfg)
        comm = tf.distribute.experimental.CommunicationOptions(
            implementation=tf.distribute.experimental.CommunicationImplementation.AUTO)
        strategy = tf.distribute.MultiWorkerMirroredStrategy(communication_options=comm)
        _patch_keras_multi_worker_reduce()
        p = Placement("multi_worker", strategy, int(cfg["task"]["index"]), len(cfg["cluster"]["worker"]))
    _PLACEMENT[key] = p
    return p


def distribute(p: Placement, make_dataset, global_batch: int):
    """The input of ``model.fit`` under ``p``: ``make_dataset(shard_index, shard_count,
    per_pipeline_batch)`` called once per input pipeline (one per worker)."""
    if p.kind == "none":
        return make_dataset(0, 1, global_batch)
    if global_batch % p.replicas:
        raise DistributionError(f"batch size {global_batch} does not split evenly between {p.replicas} replicas")

    def fn(ctx):
        return make_dataset(ctx.input_pipeline_id, ctx.num_input_pipelines, ctx.get_per_replica_batch_size(global_batch))

    return p.strategy.distribute_datasets_from_function(fn)


def build_state(model, p: Placement) -> None:
    """Create the compiled model's loss, metric and optimizer state from its symbolic inputs before
    ``fit``, and turn off Keras's own build from the first distributed batch for this model:
    Keras 3.15 reduces that batch across replicas first, which fails under
    ``MultiWorkerMirroredStrategy`` for a batch that is a dict of features."""
    import keras

    with p.strategy.scope():
        model._symbolic_build(data_batch=(model.input, keras.KerasTensor((None,), "float32")))
    model._maybe_symbolic_build = lambda iterator=None, data_batch=None: None


def _patch_keras_multi_worker_reduce() -> None:
    """Keras 3 (3.15) reduces each step's logs under ``MultiWorkerMirroredStrategy`` with
    ``strategy.reduce("MEAN", v, axis=0)``, which fails for the scalar loss and metrics
    ("Invalid reduction dimension 0 for input with 0 dimensions", tensorflow/tensorflow#72388).
    Scalars are reduced without an axis instead; everything else goes through Keras unchanged."""
    from keras.src import tree
    from keras.src.backend.tensorflow import trainer as kt

    original = kt.reduce_per_replica
    if getattr(original, "_ecdctr_patched", False):
        return

    def reduce_per_replica(values, strategy, reduction):
        if reduction in ("mean", "auto") and kt._collective_all_reduce_multi_worker(strategy):
            def one(v):
                rank = strategy.experimental_local_results(v)[0].shape.rank
                return strategy.reduce("MEAN", v, axis=0 if rank else None)

            return tree.map_structure(one, values)
        return original(values, strategy, reduction)

    reduce_per_replica._ecdctr_patched = True
    kt.reduce_per_replica = reduce_per_replica
