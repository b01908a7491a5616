"""``ecdctr serving-sync``: the served version copied from the store (moto S3 on 127.0.0.1, and
file://) into the local folder TF Serving reads. The versions here are small fake SavedModel
folders published through :func:`artifacts.publish` exactly as an export publishes them: the
sync copies and verifies files against their manifest and never looks inside them. TF Serving
itself is not installed here, so no server reads the synced folder in these tests."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from ecdctr_pipeline.app.main import main
from ecdctr_pipeline.core import paths
from ecdctr_pipeline.core.errors import CorruptArtifactError
from ecdctr_pipeline.data import artifacts
from ecdctr_pipeline.data.store import ArtifactStore, open_store
from ecdctr_pipeline.serving import pointer, sync

pytestmark = pytest.mark.integration

MODEL = "actr"
REPO = Path(__file__).resolve().parents[2]
DATA = "variables/variables.data-00000-of-00001"


def fake_version(v: int) -> dict[str, bytes]:
    """The files of a SavedModel folder, different for every version."""
    seed = hashlib.sha256(f"version {v}".encode()).digest()
    return {"saved_model.pb": b"\x08\x01" + seed * 20,
            "variables/variables.index": seed[::-1] * 3,
            DATA: seed * (200 + v),
            "assets.extra/tf_serving_warmup_requests": seed[:7] * 9}


def publish_version(store: ArtifactStore, v: int) -> dict[str, bytes]:
    files = fake_version(v)
    m = artifacts.Manifest(kind="serving_version", artifact_id=str(v), logical_date="2026-11-24")
    artifacts.publish(store, paths.serving_version(v), files, m, flat=True, last=("saved_model.pb",))
    return files


def tree(root: Path) -> dict[str, bytes | None]:
    """Every entry under ``root``: file bytes, or None for a folder."""
    return {p.relative_to(root).as_posix(): (p.read_bytes() if p.is_file() else None) for p in sorted(root.rglob("*"))}


def local_files(dest: Path, v: int) -> dict[str, bytes]:
    base = dest / MODEL / str(v)
    return {p.relative_to(base).as_posix(): p.read_bytes() for p in base.rglob("*") if p.is_file()}


def temporaries(dest: Path) -> list[str]:
    return [p.name for p in dest.rglob(".*") if p.name != sync.LOCK]


def wait_for(condition, what: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}")
        time.sleep(0.05)


def test_first_sync_pointer_change_and_rollback(any_store_settings, tmp_path, monkeypatch):
    store = open_store(any_store_settings)
    dest = tmp_path / "models"
    files = {v: publish_version(store, v) for v in (1, 2, 3)}
    fetched: list[str] = []
    real_fetch = artifacts.fetch
    monkeypatch.setattr(artifacts, "fetch", lambda s, prefix, *a, **kw: (fetched.append(prefix), real_fetch(s, prefix, *a, **kw))[1])

    pointer.set_served(store, MODEL, 1, reason="test")
    r = sync.sync_once(store, MODEL, dest)
    assert (r.version, r.previous, r.downloaded, r.switched) == (1, None, True, True)
    assert local_files(dest, 1) == files[1]
    config = (dest / "models.config").read_text()
    assert config == pointer.model_config_text(MODEL, str((dest / MODEL).resolve()), 1)
    assert 'base_path: "' + str((dest / MODEL).resolve()) + '"' in config and "versions: 1 }" in config
    # the store's config comes from the same function, with the store's path (TF Serving cannot read s3://)
    assert store.get_bytes(pointer.MODEL_CONFIG).decode() == pointer.model_config_text(
        MODEL, pointer.store_base_path(store), 1)
    assert temporaries(dest) == []

    again = sync.sync_once(store, MODEL, dest)  # already complete: nothing downloaded or rewritten
    assert not again.changed and fetched == [paths.serving_version(1)]

    pointer.set_served(store, MODEL, 2, reason="test")
    r = sync.sync_once(store, MODEL, dest)
    assert (r.version, r.previous, r.downloaded, r.switched) == (2, 1, True, True)
    assert sync.served_locally(dest) == 2 and local_files(dest, 2) == files[2]
    assert sync.local_versions(dest / MODEL) == [1, 2]  # the previous one is kept for a rollback

    state = pointer.rollback(store, MODEL)
    assert state["version"] == 1
    r = sync.sync_once(store, MODEL, dest)
    assert (r.version, r.previous, r.downloaded, r.switched) == (1, 2, False, True)  # a config switch only
    assert fetched == [paths.serving_version(1), paths.serving_version(2)]
    assert sync.served_locally(dest) == 1 and local_files(dest, 1) == files[1]

    # a newer version: downloaded; the one served before it (1) and it are kept, 2 is removed
    pointer.set_served(store, MODEL, 3, reason="test")
    r = sync.sync_once(store, MODEL, dest)
    assert (r.version, r.previous, r.downloaded, r.removed) == (3, 1, True, [2])
    assert sync.local_versions(dest / MODEL) == [1, 3] and sync.served_locally(dest) == 3


def test_a_killed_sync_leaves_nothing_it_uses(local_store_settings, tmp_path, monkeypatch):
    store = open_store(local_store_settings)
    dest = tmp_path / "models"
    publish_version(store, 1)
    publish_version(store, 2)
    pointer.set_served(store, MODEL, 1, reason="test")
    sync.sync_once(store, MODEL, dest)
    before = tree(dest)
    pointer.set_served(store, MODEL, 2, reason="test")
    real_download = store.download_file
    calls = []

    def dies_on_second_file(key, local):
        calls.append(key)
        if len(calls) == 2:
            raise KeyboardInterrupt  # a kill half-way through the version's files
        real_download(key, local)

    monkeypatch.setattr(store, "download_file", dies_on_second_file)
    with pytest.raises(KeyboardInterrupt):
        sync.sync_once(store, MODEL, dest)
    assert len(calls) == 2 and tree(dest) == before  # no half-written version, the config untouched
    monkeypatch.undo()
    # what a process killed outright leaves (a temporary folder and config) is swept by the next sync
    (dest / MODEL / ".sync-2-killed").mkdir()
    (dest / MODEL / ".sync-2-killed" / "saved_model.pb").write_bytes(b"half")
    (dest / ".models.config.tmp-killed").write_text("half")
    r = sync.sync_once(store, MODEL, dest)
    assert r.version == 2 and r.downloaded and temporaries(dest) == []
    assert local_files(dest, 2) == fake_version(2)


@pytest.mark.parametrize("damage", ["flipped byte", "cut short", "missing"])
def test_a_corrupt_version_is_refused_and_the_previous_one_stays(any_store_settings, tmp_path, damage):
    store = open_store(any_store_settings)
    dest = tmp_path / "models"
    publish_version(store, 1)
    files = publish_version(store, 2)
    pointer.set_served(store, MODEL, 1, reason="test")
    sync.sync_once(store, MODEL, dest)
    before = tree(dest)
    key = f"{paths.serving_version(2)}/{DATA}"  # flat layout: the key is the name
    if damage == "flipped byte":
        data = bytearray(files[DATA])
        data[100] ^= 0x01
        store.put_bytes(key, bytes(data))
    elif damage == "cut short":
        store.put_bytes(key, files[DATA][:-10])
    else:
        store.delete(key)
    pointer.set_served(store, MODEL, 2, reason="test")
    with pytest.raises(CorruptArtifactError) as exc:
        sync.sync_once(store, MODEL, dest)
    msg = str(exc.value)
    assert msg.startswith("serving version 2 refused: ") and store.uri(key) in msg and "\n" not in msg
    assert msg.endswith(f"{dest / 'models.config'} still serves version 1")
    assert {"flipped byte": "checksum mismatch", "cut short": "size mismatch",
            "missing": "missing"}[damage] in msg
    assert tree(dest) == before  # nothing half-written, version 1 still configured
    assert sync.served_locally(dest) == 1 and sync.local_versions(dest / MODEL) == [1]


@pytest.fixture
def cli_env(any_store_settings, monkeypatch):
    """The store settings as a pod gets them (environment variables), for ``main([...])``."""
    s = any_store_settings
    monkeypatch.setenv("ECDCTR_STORE", s.root)
    if s.endpoint_url:  # s3: the keys are the session's AWS_* variables (tests/conftest.py)
        monkeypatch.setenv("ECDCTR_STORE__ENDPOINT_URL", s.endpoint_url)
        monkeypatch.setenv("ECDCTR_STORE__ALLOW_HTTP", "true")
    return open_store(s)


def test_once_exit_codes(cli_env, tmp_path, capsys):
    store, dest = cli_env, tmp_path / "models"
    assert main(["serving-sync", "--to", str(dest), "--once"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"ecdctr: error: nothing is served yet: {store.uri(pointer.SERVED_POINTER)} names no version "
                   "(`ecdctr export` serves the first one)")
    assert not (dest / "models.config").exists()

    files = publish_version(store, 1)
    key = f"{paths.serving_version(1)}/saved_model.pb"
    store.put_bytes(key, files["saved_model.pb"][::-1])  # same size, other bytes
    pointer.set_served(store, MODEL, 1, reason="test")
    assert main(["serving-sync", "--to", str(dest), "--once"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("ecdctr: error: serving version 1 refused: checksum mismatch in " + store.uri(key))
    assert err.endswith("nothing was synced: no " + str(dest / "models.config") + " written") and "\n" not in err
    assert not (dest / "models.config").exists() and sync.local_versions(dest / MODEL) == [] and temporaries(dest) == []

    publish_version(store, 2)
    pointer.set_served(store, MODEL, 2, reason="test")
    assert main(["serving-sync", "--to", str(dest), "--once", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["version"], out["downloaded"], out["switched"]) == (2, True, True)
    assert sync.served_locally(dest) == 2 and local_files(dest, 2) == fake_version(2)
    assert main(["serving-sync", "--to", str(dest)]) == 0  # --once is the default
    assert "serving version 2 is already synced" in capsys.readouterr().out
    assert main(["serving-sync", "--to", str(dest), "--follow", "--interval", "0"]) == 2
    assert "--interval 0.0: expected a number of seconds above 0" in capsys.readouterr().err


def test_follow_switches_with_the_pointer_and_survives_a_corrupt_version(any_store_settings, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="ecdctr_pipeline.serving.sync")
    store = open_store(any_store_settings)
    dest = tmp_path / "models"
    for v in (1, 2, 3, 4):
        publish_version(store, v)
    store.delete(f"{paths.serving_version(3)}/{DATA}")  # 3 is corrupt
    pointer.set_served(store, MODEL, 1, reason="test")
    stop = threading.Event()
    result: list[int] = []
    follower = threading.Thread(target=lambda: result.append(sync.follow(
        open_store(any_store_settings), MODEL, dest, interval_s=0.05, stop=stop)), daemon=True)
    follower.start()
    try:
        wait_for(lambda: sync.served_locally(dest) == 1, "version 1 in models.config")
        pointer.set_served(store, MODEL, 2, reason="test")
        wait_for(lambda: sync.served_locally(dest) == 2, "version 2 in models.config")
        pointer.set_served(store, MODEL, 3, reason="test")
        wait_for(lambda: any("serving version 3 refused" in r.getMessage() for r in caplog.records),
                 "the refusal of version 3 logged")
        assert follower.is_alive() and sync.served_locally(dest) == 2 and local_files(dest, 2) == fake_version(2)
        pointer.set_served(store, MODEL, 4, reason="test")
        wait_for(lambda: sync.served_locally(dest) == 4, "version 4 in models.config")
    finally:
        stop.set()
        follower.join(timeout=30)
    assert not follower.is_alive() and result == [3]  # three changes: 1, 2, 4
    refusals = [r for r in caplog.records if "serving version 3 refused" in r.getMessage()]
    assert len(refusals) == 1 and refusals[0].levelno == logging.WARNING  # logged once, not every interval
    assert "still serving 2" in refusals[0].getMessage()
    assert sync.local_versions(dest / MODEL) == [2, 4] and temporaries(dest) == []


def test_follow_process_stops_on_sigterm(s3_store_settings, tmp_path):
    store = open_store(s3_store_settings)
    dest = tmp_path / "models"
    publish_version(store, 1)
    publish_version(store, 2)
    pointer.set_served(store, MODEL, 1, reason="test")
    env = {**os.environ, "ECDCTR_STORE": s3_store_settings.root, "ECDCTR_STORE__ENDPOINT_URL": s3_store_settings.endpoint_url,
           "ECDCTR_STORE__ALLOW_HTTP": "true", "ECDCTR_LOG_LEVEL": "INFO"}
    proc = subprocess.Popen([sys.executable, "-m", "ecdctr_pipeline.app.main", "serving-sync", "--to", str(dest),
                             "--follow", "--interval", "0.1"], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: sync.served_locally(dest) == 1 or proc.poll() is not None, "version 1 in models.config")
        assert proc.poll() is None
        pointer.set_served(store, MODEL, 2, reason="test")
        wait_for(lambda: sync.served_locally(dest) == 2 or proc.poll() is not None, "version 2 in models.config")
        assert proc.poll() is None
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err[-2000:]
    assert "serving-sync: stopped after 2 change(s); " + str(dest / "models.config") + " serves 2" in out
    changes = [ln for ln in err.splitlines() if "serving-sync: serving version" in ln]
    assert len(changes) == 2 and "switched from 1" in changes[1]
    assert sync.local_versions(dest / MODEL) == [1, 2] and temporaries(dest) == []
