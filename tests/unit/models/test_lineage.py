"""OpenLineage run events from the manifests: a TPM run published into a copy of the tiny store
posts one COMPLETE event (to a loopback receiver, as the HTTP transport posts) naming the Delta
tables it read at their versions and the artifact at its attempt; a file:// target gets one JSON
line; an unreachable backend is logged and the run still publishes."""

from __future__ import annotations

import json
import uuid

import pytest

from ecdctr_pipeline import tiers
from ecdctr_pipeline.core import paths
from ecdctr_pipeline.data import artifacts
from ecdctr_pipeline.data.store import open_store


@pytest.fixture
def lineage_backend():
    from tests.conftest import serve_json_posts

    yield from serve_json_posts(lambda path, body: (201, b""))


def test_a_published_tpm_set_emits_its_openlineage_run_event(pipeline_settings, lineage_backend, tmp_path):
    url, got = lineage_backend
    pipeline_settings.orchestration.openlineage_url = url
    pipeline_settings.orchestration.openlineage_namespace = "ecdctr-test"
    r = tiers.train("tpm", pipeline_settings, open_store(pipeline_settings.store), "2026-10")
    assert not r.skipped
    store = open_store(pipeline_settings.store)
    m = artifacts.read_manifest(store, paths.tpm_set("2026-10"))
    ((path, event),) = got
    assert path == "/api/v1/lineage"
    assert event["eventType"] == "COMPLETE" and event["eventTime"] == m.created_at
    assert event["schemaURL"].endswith("/RunEvent") and event["producer"].startswith("https://")
    assert event["job"] == {"namespace": "ecdctr-test", "name": "ecdctr.tpm_embedding_set"}
    assert uuid.UUID(event["run"]["runId"]).version == 5
    facet = event["run"]["facets"]["ecdctr"]
    assert facet["attempt"] == m.attempt and facet["code_version"] == m.code_version and facet["_producer"]
    # inputs: the raw table and the feature table at the versions the manifest recorded
    ins = {d["name"]: d for d in event["inputs"]}
    assert set(ins) == set(m.inputs.raw_tables) | set(m.inputs.delta_tables)
    for table, version in m.inputs.delta_tables.items():
        assert ins[table]["facets"]["version"]["datasetVersion"] == str(version)
        assert ins[table]["namespace"] == store.uri("")
    (out,) = event["outputs"]
    assert out["name"] == paths.tpm_set("2026-10") and out["facets"]["version"]["datasetVersion"] == m.attempt
    # the same publish names the same run; a file:// target gets one line per event
    from ecdctr_pipeline.data import lineage

    again = lineage.run_event(store, paths.tpm_set("2026-10"), m, namespace="ecdctr-test")
    assert again == event
    pipeline_settings.orchestration.openlineage_url = f"file://{tmp_path / 'ol' / 'events.jsonl'}"
    assert lineage.emit(pipeline_settings.orchestration, store, paths.tpm_set("2026-10"), m) == "sent"
    lines = (tmp_path / "ol" / "events.jsonl").read_text().splitlines()
    assert [json.loads(x) for x in lines] == [event]


def test_an_unreachable_lineage_backend_never_fails_the_run(pipeline_settings, caplog):
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    pipeline_settings.orchestration.openlineage_url = f"http://127.0.0.1:{port}"
    r = tiers.train("tpm", pipeline_settings, open_store(pipeline_settings.store), "2026-10")
    assert not r.skipped
    assert artifacts.find_manifest(open_store(pipeline_settings.store), paths.tpm_set("2026-10")) is not None
    assert "OpenLineage event of" in caplog.text and "not delivered" in caplog.text


def test_a_lineage_url_that_is_neither_http_nor_file_is_refused():
    from ecdctr_pipeline.core.settings import OrchestrationSettings

    with pytest.raises(ValueError, match="http\\(s\\):// URL with a host or a file:// path"):
        OrchestrationSettings(openlineage_url="kafka://broker:9092/lineage")
