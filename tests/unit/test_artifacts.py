"""Artifact publish/load on the local store (the S3 variants live in tests/integration)."""

import json

import pytest

from ecdctr_pipeline.data import artifacts
from ecdctr_pipeline.core import paths
from ecdctr_pipeline.core.errors import ArtifactMissingError, CorruptArtifactError
from ecdctr_pipeline.data.store import open_store


def _manifest(**kw):
    base = dict(kind="cpm_checkpoint", artifact_id="2026-11-23", logical_date="2026-11-23",
                data_window={"start": "2026-10-26", "end": "2026-11-23"},
                inputs=artifacts.Inputs(embedding_set="2026-10", embedding_months=["2026-07", "2026-08", "2026-09"],
                                        delta_tables={"features/complete/natural": 3}),
                metrics={"gauc": 0.61})
    base.update(kw)
    return artifacts.Manifest(**base)


def test_publish_list_load(local_store_settings, tmp_path):
    store = open_store(local_store_settings)
    folder = tmp_path / "model"
    (folder / "variables").mkdir(parents=True)
    (folder / "saved_model.pb").write_bytes(b"pb" * 100)
    (folder / "variables" / "v.data").write_bytes(b"\x00\x01" * 50)
    prefix = paths.cpm_checkpoint("2026-11-23")
    m = artifacts.publish(store, prefix, {"weights": folder, "eval.json": b'{"auc": 0.7}'}, _manifest())
    assert sorted(f.name for f in m.files) == ["eval.json", "weights/saved_model.pb", "weights/variables/v.data"]
    assert m.code_version and m.created_at and m.attempt.startswith("a-")
    listed = artifacts.list_artifacts(store)
    assert [(p, x.artifact_id) for p, x in listed] == [(prefix, "2026-11-23")]
    assert artifacts.load_bytes(store, prefix, "eval.json") == b'{"auc": 0.7}'
    got, dest = artifacts.fetch(store, prefix, tmp_path / "out")
    assert (dest / "weights/variables/v.data").read_bytes() == b"\x00\x01" * 50
    lin = artifacts.lineage(got)
    assert lin["embedding_months"] == ["2026-07", "2026-08", "2026-09"]
    assert lin["delta_tables"] == {"features/complete/natural": 3}


def test_no_manifest_means_absent(local_store_settings):
    store = open_store(local_store_settings)
    prefix = paths.tpm_set("2026-10")
    store.put_bytes(f"{prefix}/a-x/user_2026-07.parquet", b"partial")
    assert artifacts.find_manifest(store, prefix) is None
    assert artifacts.list_artifacts(store) == []
    with pytest.raises(ArtifactMissingError, match="M=2026-10"):
        artifacts.read_manifest(store, prefix)


def test_flipped_byte_detected(local_store_settings):
    store = open_store(local_store_settings)
    prefix = paths.actr_model("2026-11-24")
    m = artifacts.publish(store, prefix, {"eval.json": b"0123456789"}, _manifest(kind="actr_model"))
    key = f"{prefix}/{m.file('eval.json').key}"
    data = bytearray(store.get_bytes(key))
    data[3] ^= 0xFF
    store.put_bytes(key, bytes(data))
    with pytest.raises(CorruptArtifactError, match=r"checksum mismatch in .*eval\.json"):
        artifacts.load_bytes(store, prefix, "eval.json")
    store.put_bytes(key, b"short")
    with pytest.raises(CorruptArtifactError, match="size mismatch"):
        artifacts.verify(store, prefix)
    store.delete(key)
    with pytest.raises(CorruptArtifactError, match="missing"):
        artifacts.verify(store, prefix)


def test_republish_replaces_and_collects_old_attempt(local_store_settings):
    store = open_store(local_store_settings)
    prefix = paths.tpm_set("2026-10")
    m1 = artifacts.publish(store, prefix, {"a.bin": b"one"}, _manifest(kind="tpm_embedding_set", artifact_id="2026-10"))
    store.put_bytes(f"{prefix}/a-crashed-writer/a.bin", b"orphan")
    m2 = artifacts.publish(store, prefix, {"a.bin": b"two"}, _manifest(kind="tpm_embedding_set", artifact_id="2026-10"))
    assert m1.attempt != m2.attempt
    assert artifacts.load_bytes(store, prefix, "a.bin") == b"two"
    children = set(store.iter_children(prefix))
    assert children == {m2.attempt, "MANIFEST.json"}


def test_concurrent_publishers_of_one_artifact_leave_one_complete_artifact(local_store_settings):
    """A second publisher while the first uploads fails at once naming the holder (it used to delete
    the first one's attempt folder in its clean-up, and both exited 0); the first completes."""
    import threading

    store = open_store(local_store_settings)
    prefix = paths.tpm_set("2026-10")
    manifest = _manifest(kind="tpm_embedding_set", artifact_id="2026-10")
    uploading, release = threading.Event(), threading.Event()
    done: list = []

    def slow(name):
        if name == "a.bin":
            uploading.set()
            release.wait(30)

    first = threading.Thread(target=lambda: done.append(artifacts.publish(
        store, prefix, {"a.bin": b"first", "b.bin": b"first-b"}, manifest, on_file=slow)))
    first.start()
    assert uploading.wait(30)
    with pytest.raises(artifacts.ArtifactBusyError, match=r"tpm/sets/M=2026-10 is being published by publish "
                                                           r"tpm_embedding_set 2026-10 \(pid \d+"):
        artifacts.publish(store, prefix, {"a.bin": b"second"}, manifest)
    release.set()
    first.join(30)
    (m,) = done
    assert artifacts.load_bytes(store, prefix, "a.bin") == b"first" and artifacts.load_bytes(store, prefix, "b.bin") == b"first-b"
    assert set(store.iter_children(prefix)) == {m.attempt, "MANIFEST.json"}
    assert not store.exists(paths.writer_lease(prefix))  # released: the next publish (a --force rerun) goes ahead
    assert artifacts.load_bytes(store, prefix, "a.bin") == b"first"
    m2 = artifacts.publish(store, prefix, {"a.bin": b"again"}, manifest)
    assert artifacts.read_manifest(store, prefix).attempt == m2.attempt != m.attempt


def test_a_killed_uploads_temporary_files_are_collected(local_store_settings):
    """A writer killed mid-upload leaves an attempt folder holding only a hidden temporary file
    (hidden from listings); the next publish's clean-up removes it all the same."""
    store = open_store(local_store_settings)
    prefix = paths.tpm_set("2026-10")
    manifest = _manifest(kind="tpm_embedding_set", artifact_id="2026-10")
    killed = store.local_path(f"{prefix}/a-killed")
    killed.mkdir(parents=True)
    (killed / ".model.keras.tmp-0123").write_bytes(b"half a model")
    assert store.list(prefix) == [] and "a-killed" in set(store.iter_children(prefix))
    m = artifacts.publish(store, prefix, {"a.bin": b"x"}, manifest)
    assert not killed.exists() and set(store.iter_children(prefix)) == {m.attempt, "MANIFEST.json"}


def test_invalid_manifest_is_an_error_naming_the_path(local_store_settings):
    store = open_store(local_store_settings)
    prefix = paths.cpm_checkpoint("2026-11-23")
    store.put_bytes(paths.manifest_key(prefix), json.dumps({"kind": "cpm_checkpoint"}).encode())
    with pytest.raises(CorruptArtifactError, match="W=2026-11-23/MANIFEST.json"):
        artifacts.read_manifest(store, prefix)


def test_manifest_file_lookup_names_missing():
    with pytest.raises(ArtifactMissingError, match="no file 'x'"):
        _manifest().file("x")


def test_scratch_folders_of_killed_processes_are_swept(local_store_settings, tmp_path):
    """Scratch folders carry their process's id; a process killed before its clean-up leaves one,
    which the next scratch folder's creation removes (live processes' folders are kept)."""
    import os
    import subprocess
    import sys

    from ecdctr_pipeline.data.store import sweep_scratch

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    left = tmp_path / f"ecdctr-export-p{dead}-abc123"
    mine = tmp_path / f"ecdctr-tpm-p{os.getpid()}-def456"
    parent = tmp_path / f"ecdctr-cpm-p{os.getppid()}-0aa"
    other = tmp_path / "unrelated-p1-x"
    for d in (left, mine, parent, other):
        (d / "sub").mkdir(parents=True)
    assert sweep_scratch(tmp_path) == [left]
    assert not left.exists() and mine.exists() and parent.exists() and other.exists()
    store = open_store(local_store_settings)
    scratch = store.scratch_dir("ecdctr-tpm-")
    assert scratch.name.startswith(f"ecdctr-tpm-p{os.getpid()}-")
    scratch.rmdir()


def test_a_failing_clean_up_after_the_manifest_does_not_fail_the_publish(local_store_settings, monkeypatch, caplog):
    store = open_store(local_store_settings)
    prefix = paths.tpm_set("2026-10")
    manifest = _manifest(kind="tpm_embedding_set", artifact_id="2026-10")
    first = artifacts.publish(store, prefix, {"a.bin": b"one"}, manifest)

    def gone(*a, **kw):
        raise ConnectionError("endpoint went away")

    monkeypatch.setattr(type(store), "delete_prefix", gone)
    second = artifacts.publish(store, prefix, {"a.bin": b"two"}, manifest)
    assert artifacts.load_bytes(store, prefix, "a.bin") == b"two"  # published, the old attempt left over
    assert "removing replaced attempts failed (endpoint went away)" in caplog.text
    monkeypatch.undo()
    third = artifacts.publish(store, prefix, {"a.bin": b"three"}, manifest)
    assert set(store.iter_children(prefix)) == {third.attempt, "MANIFEST.json"} and first.attempt != second.attempt


def test_a_manifest_names_the_run_that_published_it(local_store_settings, monkeypatch):
    """ECDCTR_RUN_ID (every DAG step's environment, or ``ecdctr backfill``'s) lands in the manifest;
    by hand (unset) it stays None."""
    store = open_store(local_store_settings)
    m = artifacts.Manifest(kind="cpm_checkpoint", artifact_id="2026-11-23", logical_date="2026-11-23")
    assert artifacts.publish(store, paths.cpm_checkpoint("2026-11-23"), {"model.keras": b"x"}, m).run_id is None
    monkeypatch.setenv(artifacts.ENV_RUN_ID, "scheduled__2026-11-23T00:00:00+00:00")
    artifacts.publish(store, paths.cpm_checkpoint("2026-11-23"), {"model.keras": b"y"}, m)
    assert artifacts.read_manifest(store, paths.cpm_checkpoint("2026-11-23")).run_id == \
        "scheduled__2026-11-23T00:00:00+00:00"
