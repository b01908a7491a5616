"""A trainer killed with SIGKILL mid-training resumes from its last checkpoint in the store,
publishes a valid artifact, and leaves no checkpoint behind."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import yaml

from ecdctr_pipeline import tiers
from ecdctr_pipeline.core import paths
from ecdctr_pipeline.core.settings import load_settings, settings_dict
from ecdctr_pipeline.data import artifacts
from ecdctr_pipeline.data.store import open_store
from ecdctr_pipeline.modeling import training

from tests.conftest import tiny_settings

ROOT = Path(__file__).resolve().parents[3]


def test_killed_actr_trainer_resumes_from_the_store(cpm_trained_store, tmp_path):
    shutil.copytree(cpm_trained_store, tmp_path / "store")
    s = tiny_settings(f"file://{tmp_path / 'store'}")
    s.actr.epochs = 3  # killed as soon as the first epoch's checkpoint appears: epochs are left to resume
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump(settings_dict(s, mask=False)))
    store = open_store(s.store)
    state_key = f"{paths.resume_state(paths.actr_model('2026-11-24'))}/state.json"
    env = {**os.environ, "ECDCTR_CONFIG": str(cfg), "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.Popen([sys.executable, "-m", "ecdctr_pipeline.app.main", "train", "actr", "--as-of", "2026-11-24"],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while not store.exists(state_key):
        assert proc.poll() is None, proc.stderr.read()[-2000:]
        assert time.monotonic() < deadline, "no checkpoint within 240 s"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    killed_at = json.loads(store.get_bytes(state_key))["epoch"]
    assert 0 <= killed_at < 2
    assert artifacts.find_manifest(store, paths.actr_model("2026-11-24")) is None  # nothing half-published

    r = tiers.train("actr", load_settings(cfg), store, "2026-11-24")
    m = artifacts.read_manifest(store, paths.actr_model("2026-11-24"))
    assert r.extra["blessed"] is not None and m.extra["resumed_after_epoch"] >= killed_at
    assert np.isfinite(m.metrics["train_loss"]) and m.metrics["gauc_coverage"] > 0
    model = training.load_model(store, paths.actr_model("2026-11-24"), m)  # a valid, verified artifact
    assert model.name == "actr"
    assert store.list(paths.resume_state(paths.actr_model("2026-11-24"))) == []  # no checkpoint litter
