"""The artifact store and Delta helpers against a real S3-compatible server (moto, 127.0.0.1)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading

import pyarrow as pa
import pytest

from ecdctr_pipeline.data import artifacts, delta
from ecdctr_pipeline.core import paths
from ecdctr_pipeline.core.errors import ArtifactMissingError, CorruptArtifactError
from ecdctr_pipeline.data.store import open_store

pytestmark = pytest.mark.integration


def _manifest(kind="tpm_embedding_set", aid="2026-10"):
    return artifacts.Manifest(kind=kind, artifact_id=aid, logical_date="2026-10-01",
                              months=["2026-07", "2026-08", "2026-09"])


def test_publish_list_load_round_trip(s3_store_settings, tmp_path):
    store = open_store(s3_store_settings)
    src = tmp_path / "user_2026-07.parquet"
    src.write_bytes(b"PAR1" + bytes(range(256)) * 40)
    prefix = paths.tpm_set("2026-10")
    m = artifacts.publish(store, prefix, {"user_2026-07.parquet": src, "extra.json": b"{}"}, _manifest())
    listed = artifacts.list_artifacts(store)
    assert [(p, x.months) for p, x in listed] == [(prefix, ["2026-07", "2026-08", "2026-09"])]
    _, dest = artifacts.fetch(store, prefix, tmp_path / "back")
    assert (dest / "user_2026-07.parquet").read_bytes() == src.read_bytes()
    assert m.file("extra.json").size == 2
    assert store.root.startswith("s3://") and store.uri(prefix).endswith("/pipeline/" + prefix)


def test_flipped_byte_detected_on_s3(s3_store_settings):
    store = open_store(s3_store_settings)
    prefix = paths.cpm_checkpoint("2026-11-23")
    m = artifacts.publish(store, prefix, {"weights.bin": bytes(1000)}, _manifest("cpm_checkpoint", "2026-11-23"))
    key = f"{prefix}/{m.file('weights.bin').key}"
    data = bytearray(store.get_bytes(key))
    data[500] ^= 0x01
    store.put_bytes(key, bytes(data))
    with pytest.raises(CorruptArtifactError) as exc:
        artifacts.load_bytes(store, prefix, "weights.bin")
    assert store.uri(key) in str(exc.value)


WRITER = textwrap.dedent("""
    import sys, time
    from ecdctr_pipeline.data import artifacts
    from ecdctr_pipeline.core import paths
    from ecdctr_pipeline.core.settings import StoreSettings
    from ecdctr_pipeline.data.store import open_store
    settings = StoreSettings.model_validate_json(sys.argv[1])
    store = open_store(settings)
    files = {f"part-{i}.bin": bytes([i]) * 4096 for i in range(50)}
    def slow(name):
        print("uploaded", name, flush=True)
        time.sleep(0.2)
    artifacts.publish(store, paths.tpm_set("2026-10"),
                      files, artifacts.Manifest(kind="tpm_embedding_set", artifact_id="2026-10",
                                                logical_date="2026-10-01"), on_file=slow)
    print("published", flush=True)
""")


def test_killed_writer_leaves_nothing_visible(s3_store_settings):
    store = open_store(s3_store_settings)
    cfg = s3_store_settings.model_copy()
    payload = json.dumps({**json.loads(cfg.model_dump_json()), "access_key_id": "testing",
                          "secret_access_key": "testing"})
    proc = subprocess.Popen([sys.executable, "-c", WRITER, payload], stdout=subprocess.PIPE, text=True)
    seen = 0
    for line in proc.stdout:
        if line.startswith("uploaded"):
            seen += 1
        if seen == 3:
            proc.kill()
            break
    proc.wait(timeout=30)
    assert proc.returncode != 0
    prefix = paths.tpm_set("2026-10")
    assert store.list(prefix), "the writer should have left partial files behind"
    assert artifacts.find_manifest(store, prefix) is None
    assert artifacts.list_artifacts(store) == []
    with pytest.raises(ArtifactMissingError):
        artifacts.read_manifest(store, prefix)
    # the next publish of the same artifact cleans the orphaned attempt
    artifacts.publish(store, prefix, {"ok.bin": b"x"}, _manifest())
    assert set(store.iter_children(prefix)) == {artifacts.read_manifest(store, prefix).attempt, "MANIFEST.json"}


def test_two_concurrent_delta_appends_both_land(s3_store_settings):
    store = open_store(s3_store_settings)
    delta.write(store, "raw/natural", pa.table({"dt": ["2026-01-01"], "w": [0]}), mode="append")
    errors: list[BaseException] = []

    def append(writer: int) -> None:
        try:
            for i in range(4):
                delta.write(open_store(s3_store_settings), "raw/natural",
                            pa.table({"dt": ["2026-01-01"], "w": [writer * 10 + i]}), mode="append")
        except BaseException as exc:  # noqa: BLE001 - surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=append, args=(w,)) for w in (1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    table, version = delta.read(store, "raw/natural")
    assert sorted(table["w"].to_pylist()) == [0, 10, 11, 12, 13, 20, 21, 22, 23]
    assert version == 8


def test_rerun_of_same_app_transaction_does_not_double_commit(s3_store_settings):
    store = open_store(s3_store_settings)
    data = pa.table({"dt": ["2026-01-01", "2026-01-02"], "x": [1, 2]})
    first = delta.write(store, "features/tpm", data, txn=("extract-tpm:2026-03", 1))
    second = delta.write(store, "features/tpm", data, txn=("extract-tpm:2026-03", 1))
    assert not first.skipped and second.skipped
    assert delta.version(store, "features/tpm") == first.version
    assert delta.read(store, "features/tpm")[0].num_rows == 2
    # replacing a partition on S3
    delta.write(store, "features/tpm", pa.table({"dt": ["2026-01-02"], "x": [9]}))
    assert sorted(delta.read(store, "features/tpm")[0]["x"].to_pylist()) == [1, 9]
