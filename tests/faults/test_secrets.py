"""Fault suite, secrets: with every secret setting set (store keys, a webhook URL carrying
credentials and a token, an SMTP password), commands that print settings, fail on settings,
and fail a quality gate whose notifiers cannot be reached run at debug verbosity; no secret
appears in any output line, message or stored object."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ecdctr_pipeline.core.settings import StoreSettings
from ecdctr_pipeline.data.store import open_store
from tests.conftest import free_port

pytestmark = pytest.mark.faults

REPO = Path(__file__).resolve().parents[2]
SECRETS = {"key-id": "AKIDfault7711", "secret-key": "#sk/fault+8675309123", "url-password": "hook-pass-4242",
           "url-token": "tok-99173", "smtp-password": "smtp-pw-5150"}


def test_no_secret_in_any_output_or_stored_object(tmp_path, fault_counts):
    from ecdctr_pipeline.data.simulate import simulate

    root = tmp_path / "store"
    simulate(open_store(StoreSettings(root=f"file://{root}")), dt.date(2026, 11, 18), dt.date(2026, 11, 20), "tiny",
             seed=1, domains=("ad",), progress=False)
    env = {**os.environ, "PYTHONPATH": str(REPO), "ECDCTR_STORE": f"file://{root}",
           "ECDCTR_STORE__ACCESS_KEY_ID": SECRETS["key-id"],
           "ECDCTR_STORE__SECRET_ACCESS_KEY": SECRETS["secret-key"],
           "ECDCTR_ALERTS__NOTIFIERS": "[log, webhook, email]",
           "ECDCTR_ALERTS__WEBHOOK_URL": f"http://ops:{SECRETS['url-password']}@127.0.0.1:{free_port()}/hooks/"
                                         f"{SECRETS['url-token']}",
           "ECDCTR_ALERTS__WEBHOOK_TIMEOUT_S": "2",
           "ECDCTR_ALERTS__SMTP_PORT": str(free_port()), "ECDCTR_ALERTS__SMTP_USER": "ops",
           "ECDCTR_ALERTS__SMTP_PASSWORD": SECRETS["smtp-password"], "ECDCTR_ALERTS__EMAIL_TO": "[oncall@example.org]"}
    commands = {
        "config show": (["config", "show"], {}, 0),
        "config show --json": (["config", "show", "--json"], {}, 0),
        "status": (["-vv", "status"], {}, 0),
        # a quality gate that fails (the holdout day is missing) and alerts through two dead notifiers
        "failing gate": (["-vv", "gate", "actr", "--as-of", "2026-11-24"], {}, 2),
        "bad setting beside the secrets": (["status"], {"ECDCTR_TPM__LEARNING_RATE": "-1"}, 2),
        "a secret's own bad value": (["status"], {"ECDCTR_ALERTS__SMTP_PASSWORD": "[not, a, string]"}, None),
    }
    outputs = []
    for name, (argv, extra, want) in commands.items():
        p = subprocess.run([sys.executable, "-m", "ecdctr_pipeline.app.main", *argv], cwd=tmp_path, text=True,
                           capture_output=True, env={**env, **extra}, timeout=300)
        if want is not None:
            assert p.returncode == want, (name, p.stderr[-1500:])
        outputs.append((name, p.stdout + p.stderr))
    gate_out = dict(outputs)["failing gate"]
    assert "webhook" in gate_out and "quality gate failed" in gate_out  # the notifiers were tried and failed
    stored = [(str(f.relative_to(tmp_path)), f.read_bytes().decode("utf-8", "replace"))
              for f in sorted(tmp_path.rglob("*")) if f.is_file() and f.suffix in ("", ".json", ".log", ".txt", ".md")]
    assert any("result.json" in n for n, _ in stored)  # the gate's stored result is among them
    for what, secret in SECRETS.items():
        for name, text in outputs + stored:
            assert secret not in text, (what, name)
    fault_counts["secret values checked (outputs x stored objects)"] = len(SECRETS) * (len(outputs) + len(stored))
