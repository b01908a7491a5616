"""``orchestration.execution: docker``: every step a container of its image on one host's engine,
through Airflow's Docker provider (``DockerOperator``) against the engine's Docker API (Docker,
or podman's compatible socket: ``podman system service``).

A step's container gets exactly the command its Kubernetes pod gets (``commands.pod_command``,
entry point and arguments alike), the same settings file (mounted at ``/etc/ecdctr/config.yaml``)
and the same result protocol: the CLI writes the step's JSON result to ``ECDCTR_RESULT_FILE``, read
back from the stopped container as the task's XCom. A trainer step with ``training.workers`` > 1
runs that many containers of the trainer image at once (the docker counterpart of the Indexed
Job): they find each other by container name on ``orchestration.docker.network`` and worker 0
publishes; the task fails when any worker fails.
"""

from __future__ import annotations

import json
import os
from typing import Any

from airflow.providers.docker.exceptions import DockerContainerFailedException
from airflow.providers.docker.operators.docker import DockerOperator

from ecdctr_pipeline.core.settings import Settings
from ecdctr_pipeline.modeling.distribute import ENV_JOB_INDEX, ENV_WORKER_HOSTS

CONFIG_PATH = "/etc/ecdctr/config.yaml"
RESULT_FILE = "/tmp/ecdctr-result.json"  # noqa: S108 - inside the step's own container
# a name unique to the task try (its TaskInstance id), also the container's hostname: Spark
# executors and the other trainer workers reach the container by it
NAME_SUFFIX = "{{ (ti.id | string)[-12:] }}-{{ ti.try_number }}"


def container_name(tier: str, step_name: str) -> str:
    return f"ecdctr-{tier}-{step_name}".replace("_", "-") + "-" + NAME_SUFFIX


def container_spec(s: Settings, *, kind: str, command: list[str]) -> dict[str, Any]:
    """What a step's container is made of (the arguments :class:`StepContainerOperator` gets
    besides its name): image, entry point and arguments, environment, mounts, network."""
    from ecdctr_pipeline.data.artifacts import ENV_RUN_ID
    from ecdctr_pipeline.orchestration.commands import ENV_RESULT_FILE

    from ecdctr_pipeline.orchestration.steps import POD_KINDS

    if kind not in POD_KINDS:
        raise ValueError(f"a {kind} step does not run in a container")
    d = s.orchestration.docker
    mounts = [{"source": d.config_source, "target": CONFIG_PATH, "type": "bind", "read_only": True}]
    for v in d.volumes:
        src, dst, *mode = v.split(":")
        mounts.append({"source": src, "target": dst, "type": "bind", "read_only": mode == ["ro"]})
    return {
        "image": d.spark_image if kind == "spark" else d.trainer_image,
        "entrypoint": command[:1],
        "command": command[1:],
        "environment": {"ECDCTR_CONFIG": CONFIG_PATH, "ECDCTR_ORCHESTRATION__EXECUTION": "in_process",
                        ENV_RUN_ID: "{{ run_id }}",
                        ENV_RESULT_FILE: RESULT_FILE},
        "mounts": mounts,
        "network_mode": d.network,
    }


def operator(s: Settings, *, tier: str, step, command: list[str], workers: int, outlets: list, common: dict):
    """The ``DockerOperator`` of one step (``airflow_support.render_tier`` in docker mode);
    ``workers`` > 1: that many trainer containers at once."""
    d = s.orchestration.docker
    name = container_name(tier, step.name)
    return StepContainerOperator(
        **container_spec(s, kind=step.kind, command=command), container_name=name, hostname=name,
        workers=workers, worker_port=s.training.worker_port, worker_timeout_s=d.worker_timeout_s,
        # credentials: read from the worker's environment when the task runs, never rendered
        pass_env=tuple(d.pass_env), docker_url=d.url, auto_remove=d.auto_remove, mount_tmp_dir=False,
        retrieve_output=True, retrieve_output_path=RESULT_FILE, outlets=outlets, **common,
    )


class StepContainerOperator(DockerOperator):
    """``DockerOperator`` whose XCom is the step's JSON result file, whose container name is
    also its hostname (both templated per try), and which runs ``workers`` containers at once
    for a multi-worker trainer step."""

    template_fields = (*DockerOperator.template_fields, "hostname")
    pickling_library = json  # the result file is JSON, read by _copy_from_docker

    def __init__(self, *, workers: int = 1, worker_port: int = 0, worker_timeout_s: int = 600,
                 pass_env: tuple[str, ...] = (), **kwargs):
        super().__init__(**kwargs)
        self.workers, self.worker_port, self.worker_timeout_s = workers, worker_port, worker_timeout_s
        self.pass_env = pass_env

    def execute(self, context):
        self._private_environment = {k: os.environ[k] for k in self.pass_env if k in os.environ}
        return super().execute(context)

    def _run_image_with_mounts(self, target_mounts, add_tmp_variable: bool):
        if self.workers <= 1:
            return super()._run_image_with_mounts(target_mounts, add_tmp_variable)
        base, env = self.container_name, dict(self.environment)
        names = [f"{base}-{i}" for i in range(self.workers)]
        env.update({ENV_WORKER_HOSTS: ",".join(f"{n}:{self.worker_port}" for n in names),
                    "ECDCTR_TRAINING__DISTRIBUTION": "multi_worker"})
        others = []
        try:
            for i, n in enumerate(names[1:], start=1):  # workers 1..N-1 detached, then worker 0 attached
                c = self.cli.create_container(
                    image=self.image, command=self.format_command(self.command),
                    entrypoint=self.format_command(self.entrypoint), name=n, hostname=n,
                    environment={**env, ENV_JOB_INDEX: str(i), **self._private_environment},
                    host_config=self.cli.create_host_config(auto_remove=False, mounts=target_mounts,
                                                            network_mode=self.network_mode),
                    labels=self.labels)
                others.append(c["Id"])
                self.cli.start(c["Id"])
            self.container_name = self.hostname = names[0]
            self.environment = {**env, ENV_JOB_INDEX: "0"}
            result = super()._run_image_with_mounts(target_mounts, add_tmp_variable)
            failed = []
            for i, cid in enumerate(others, start=1):
                code = self.cli.wait(cid, timeout=self.worker_timeout_s)["StatusCode"]
                for line in self.cli.logs(cid, tail=20).decode(errors="replace").splitlines():
                    self.log.info("[worker %d] %s", i, line)
                if code != 0:
                    failed.append(f"worker {i} exited {code}")
            if failed:
                raise DockerContainerFailedException("; ".join(failed), logs=[])
            return result
        finally:
            for cid in others:
                if self.auto_remove != "never":
                    try:
                        self.cli.remove_container(cid, force=True)
                    except Exception as exc:  # noqa: BLE001 - cleanup must not hide the step's own error
                        self.log.warning("could not remove worker container %s: %s", cid[:12], exc)
                else:
                    self.cli.stop(cid, timeout=5)
