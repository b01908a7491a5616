"""OpenLineage run events from the artifacts' manifests (``orchestration.openlineage_url``).

Lineage lives in the manifests (what each artifact read, at which versions); every publish of a
training artifact or a serving version also emits one OpenLineage ``COMPLETE`` run event, so a
lineage backend (Marquez, DataHub, a cloud catalogue) sees the same graph: the job is
``ecdctr.<kind>`` (``ecdctr.actr_model``...), the inputs are the Delta tables at the versions read
(raw tables and feature tables, with a ``version`` facet), the embedding set, the CPM
checkpoint and the A-CTR model a version was exported from; the output is the artifact at its
publish attempt. The run id is a UUID derived from the artifact and its attempt (the same
publish always names the same run); the Airflow DAG run id, the code version and the metrics are
in a ``ecdctr`` run facet. The events follow the OpenLineage 2-0-2 RunEvent schema; they are
posted the way the OpenLineage HTTP transport posts (``<url>/api/v1/lineage``, JSON), or
appended one per line to a ``file://`` path. Emission is best effort: a lineage backend that is
down is logged and never fails the run that published.
"""

from __future__ import annotations

import json
import logging
import urllib.request
import uuid
from pathlib import Path
from urllib.parse import urlparse

from ecdctr_pipeline.core import paths
from ecdctr_pipeline.data.artifacts import Manifest
from ecdctr_pipeline.data.store import ArtifactStore

log = logging.getLogger(__name__)

SCHEMA_URL = "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent"
VERSION_FACET = "https://openlineage.io/spec/facets/1-0-1/DatasetVersionDatasetFacet.json"
PRODUCER = "https://github.com/ecdctr/ecdctr"
ECDCTR_FACET = "https://github.com/ecdctr/ecdctr/blob/main/ecdctr_pipeline/data/lineage.py"


def _dataset(store: ArtifactStore, name: str, version=None) -> dict:
    out: dict = {"namespace": store.uri(""), "name": name}
    if version is not None:
        out["facets"] = {"version": {"_producer": PRODUCER, "_schemaURL": VERSION_FACET,
                                     "datasetVersion": str(version)}}
    return out


def run_event(store: ArtifactStore, prefix: str, m: Manifest, *, namespace: str = "ecdctr") -> dict:
    """The OpenLineage ``COMPLETE`` event of the artifact ``m`` published under ``prefix``."""
    i = m.inputs
    inputs = [_dataset(store, t, (i.raw_tables.get(t) or {}).get("version")) for t in sorted(i.raw_tables)]
    inputs += [_dataset(store, t, v) for t, v in sorted(i.delta_tables.items())]
    if i.embedding_set:
        inputs.append(_dataset(store, paths.tpm_set(i.embedding_set)))
    if i.cpm_checkpoint:
        inputs.append(_dataset(store, paths.cpm_checkpoint(i.cpm_checkpoint)))
    if i.actr_model:
        inputs.append(_dataset(store, paths.actr_model(i.actr_model), i.actr_attempt))
    run_id = uuid.uuid5(uuid.NAMESPACE_URL, f"{store.uri(prefix)}@{m.attempt}")
    return {
        "eventType": "COMPLETE", "eventTime": m.created_at, "producer": PRODUCER, "schemaURL": SCHEMA_URL,
        "run": {"runId": str(run_id), "facets": {"ecdctr": {
            "_producer": PRODUCER, "_schemaURL": ECDCTR_FACET, "airflow_run_id": m.run_id,
            "code_version": m.code_version, "attempt": m.attempt, "logical_date": m.logical_date,
            "metrics": {k: v for k, v in m.metrics.items() if isinstance(v, (int, float, str, bool)) or v is None}}}},
        "job": {"namespace": namespace, "name": f"ecdctr.{m.kind}"},
        "inputs": inputs, "outputs": [_dataset(store, prefix, m.attempt)],
    }


def emit(orchestration, store: ArtifactStore, prefix: str, m: Manifest) -> str | None:
    """Send ``m``'s run event to ``orchestration.openlineage_url`` (None: off). Returns "sent",
    the error (logged, never raised), or None when off."""
    url = orchestration.openlineage_url
    if not url:
        return None
    event = run_event(store, prefix, m, namespace=orchestration.openlineage_namespace)
    try:
        parsed = urlparse(url)
        if parsed.scheme == "file":
            path = Path(parsed.path)
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("a") as f:
                f.write(json.dumps(event, default=str) + "\n")
        else:
            req = urllib.request.Request(url.rstrip("/") + "/api/v1/lineage", method="POST",
                                         data=json.dumps(event, default=str).encode(),
                                         headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(req, timeout=orchestration.openlineage_timeout_s) as resp:
                if resp.status >= 300:
                    raise RuntimeError(f"HTTP {resp.status}")
        return "sent"
    except Exception as exc:  # noqa: BLE001 - lineage is best effort: the artifact is published
        err = f"{type(exc).__name__}: {str(exc)[:200]}"
        log.warning("OpenLineage event of %s not delivered (%s); the manifest holds the lineage", prefix, err)
        return f"failed: {err}"
