"""``make images`` (scripts/images.sh check): the A-CTR DAG built in docker mode, and its
``quality_gate`` task — the DAG's own ``DockerOperator``, templates rendered for one logical
date — executed against a container engine's Docker API (podman's socket here). Prints the
step's JSON result, read back from the stopped container as the XCom would be.

    docker_mode_check.py --socket unix:///PATH --config HOST_CONFIG --store HOST_DIR --image IMG --ds DAY
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import types
import uuid


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    for a in ("--socket", "--config", "--store", "--image", "--ds"):
        p.add_argument(a, required=True)
    a = p.parse_args()
    os.environ.update({
        "ECDCTR_CONFIG": a.config, "ECDCTR_ORCHESTRATION__EXECUTION": "docker",
        "ECDCTR_ORCHESTRATION__DOCKER__URL": a.socket, "ECDCTR_ORCHESTRATION__DOCKER__CONFIG_SOURCE": a.config,
        "ECDCTR_ORCHESTRATION__DOCKER__TRAINER_IMAGE": a.image,
        "ECDCTR_ORCHESTRATION__DOCKER__VOLUMES": json.dumps([f"{a.store}:/store"]),
        "ECDCTR_ORCHESTRATION__DOCKER__AUTO_REMOVE": "force",
    })
    from airflow.dag_processing.dagbag import DagBag

    from ecdctr_pipeline.orchestration.runner import DAGS_FOLDER

    bag = DagBag(dag_folder=str(DAGS_FOLDER))
    if bag.import_errors:
        print(f"docker mode: the DAGs do not import: {bag.import_errors}", file=sys.stderr)
        return 1
    op = bag.dags["ecdctr_actr_daily"].get_task("quality_gate")  # parsed, not read back from a database
    ti = types.SimpleNamespace(id=uuid.uuid4(), try_number=1, xcom_pull=lambda **_: {})
    op.render_template_fields({"ds": a.ds, "ti": ti})
    result = op.execute({"ds": a.ds, "ti": ti})
    print(json.dumps({"container": op.container_name, "command": [*op.entrypoint, *op.command], "result": result}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
