"""Fault suite, a damaged or read-only store, and what a command run by hand sends (issue 28).

* A data file the Delta log names is missing, cut short or garbage: ``validate``, ``extract
  --force`` (DuckDB) and ``train --force`` (the trainers' streaming reader) end in one line
  ``ecdctr: error: …`` naming the table and the file, exit 2, and change nothing; a forced
  extraction rewrites a damaged feature day. (The Spark engine's read failure is turned into the
  same line by :func:`ecdctr_pipeline.data.delta.spark_read_failure`, checked here on the
  messages Spark 4 gives.)
* A Delta log entry cut mid-line: one line naming the entry, no Rust backtrace.
* A read-only store (a read-only bind mount in a private mount namespace: the tests run as
  root, which permission bits do not stop): ``train actr`` fails before training, ``export``
  in one line; a store whose probe write fails (a full disk, an S3 policy refusing PutObject)
  is refused by ``check_access``.
* ``ecdctr check cpm`` run by hand sends no ``cpm_fallback`` alert unless ``--alert`` (the
  DAG's sensor passes it).
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ecdctr_pipeline.app.main import main
from tests.faults.test_bad_inputs import _one_line_error, _tree

pytestmark = pytest.mark.faults

REPO = Path(__file__).resolve().parents[2]
DAMAGED_DAY = "2026-05-05"  # in the TPM window of 2026-10 (months 2026-04 .. 2026-09)

TINY_YAML = """\
store: {{root: "file://{root}"}}
features: {{engine: duckdb, max_seq_len: 10,
           hash_buckets: {{user_id: 400, item_id: 300, category_id: 16, item_brand: 50}}}}
tpm: {{batch_size: 1024, hidden_units: [16]}}
cpm: {{hidden_units: [32, 16], batch_size: 512, epochs: 1, attention_units: [8]}}
actr: {{batch_size: 256, epochs: 1, min_gauc: 0.0}}  # tiny: GAUC is noise (tests/conftest.py)
{extra}"""


def config_for(tmp_path: Path, root: Path, extra: str = "") -> str:
    """A settings file of the tests' tiny pipeline (tests/conftest.py ``tiny_settings``) on ``root``."""
    p = tmp_path / f"settings-{root.name}.yaml"
    p.write_text(TINY_YAML.format(root=root, extra=extra))
    return str(p)


def damage(path: Path, how: str) -> None:
    if how == "missing":
        path.unlink()
    elif how == "cut short":
        path.write_bytes(path.read_bytes()[:100])
    else:  # garbage of the same size
        path.write_bytes(os.urandom(path.stat().st_size))


def data_file(root: Path, table: str, day: str = DAMAGED_DAY) -> Path:
    return sorted((root / table / f"dt={day}").glob("*.parquet"))[0]


@pytest.mark.parametrize("how", ["missing", "cut short", "garbage"])
def test_a_damaged_data_file_is_one_line_naming_the_table_and_the_file(how, tiny_pipeline_store, tmp_path, capsys,
                                                                       fault_counts):
    root = tmp_path / "store"
    shutil.copytree(tiny_pipeline_store, root)
    cfg = config_for(tmp_path, root)
    raw, feats = data_file(root, "raw/natural"), data_file(root, "features/tpm")
    damage(raw, how)
    damage(feats, how)
    before = _tree(root)
    cases = {
        "validate features/tpm": (["validate", "--table", "features/tpm", "--as-of", DAMAGED_DAY], "features/tpm",
                                  feats.name),
        "train tpm --force": (["train", "tpm", "--as-of", "2026-10-01", "--force"], "features/tpm", feats.name),
        "validate raw/natural": (["validate", "--table", "raw/natural", "--as-of", DAMAGED_DAY], "raw/natural",
                                 raw.name),
        "extract tpm --force": (["extract", "tpm", "--as-of", "2026-10", "--force"], "raw/natural", raw.name),
    }
    for name, (argv, table, file_name) in cases.items():
        assert main(["--config", cfg, *argv]) == 2, name
        line = _one_line_error(capsys, f"{how}: {name}", file_name)
        assert f"cannot read {table} " in line, (name, line)
        assert ("is missing" in line) == (how == "missing"), (name, line)
        assert "<unknown>" not in line and "Traceback" not in line
        assert _tree(root) == before, name  # nothing written, not even a quality result or a lease
    fault_counts[f"damaged data files ({how})"] = len(cases)


def test_a_forced_extraction_rewrites_a_damaged_feature_day(tiny_pipeline_store, tmp_path, capsys):
    """What the message advises works: the forced window replaces the day's files without reading them."""
    root = tmp_path / "store"
    shutil.copytree(tiny_pipeline_store, root)
    cfg = config_for(tmp_path, root)
    damage(data_file(root, "features/tpm"), "cut short")
    assert main(["--config", cfg, "validate", "--table", "features/tpm", "--as-of", DAMAGED_DAY]) == 2
    assert "re-extract a window holding 2026-05-05 with --force" in _one_line_error(capsys, "damaged")
    assert main(["--config", cfg, "extract", "tpm", "--as-of", "2026-10", "--force"]) == 0
    assert main(["--config", cfg, "validate", "--table", "features/tpm", "--as-of", DAMAGED_DAY]) == 0
    assert "PASSED" in capsys.readouterr().out


def test_a_cut_delta_log_entry_is_named_without_a_backtrace(tiny_pipeline_store, tmp_path, capsys, fault_counts):
    root = tmp_path / "store"
    shutil.copytree(tiny_pipeline_store, root)
    cfg = config_for(tmp_path, root)
    entry = sorted((root / "raw/natural/_delta_log").glob("*.json"))[-1]
    text = entry.read_bytes()
    entry.write_bytes(text[:len(text) // 2])  # cut mid-line
    cases = [["status"], ["validate", "--table", "raw/natural", "--as-of", DAMAGED_DAY],
             ["extract", "tpm", "--as-of", "2026-10", "--force"]]
    for argv in cases:
        assert main(["--config", cfg, *argv]) == 2, argv
        line = _one_line_error(capsys, argv[0], f"_delta_log/{entry.name}")
        assert "raw/natural" in line and "<unknown>" not in line and "pthread" not in line, line
    fault_counts["cut Delta log entries"] = len(cases)


SPARK_MESSAGES = {  # what pyspark 4.2 raises (Py4JJavaError text, cut) for a missing / a garbage file
    "missing": "An error occurred while calling o393.save.\n: org.apache.spark.SparkException: "
               "[FAILED_READ_FILE.FILE_NOT_EXIST] Encountered error while reading file file:{root}/raw/natural/"
               "dt=2026-05-05/part-00000-f475.snappy.parquet. File does not exist. It is possible the underlying "
               "files have been updated.\n\tat org.apache.spark.sql.errors.QueryExecutionErrors$...",
    "garbage": "An error occurred while calling o393.save.\n: org.apache.spark.SparkException: "
               "[FAILED_READ_FILE.NO_HINT] Encountered error while reading file file:{root}/raw/natural/"
               "dt=2026-05-05/part-00000-f475.snappy.parquet.  SQLSTATE: KD001\nCaused by: java.lang.RuntimeException: "
               "file:{root}/raw/natural/dt=2026-05-05/part-00000-f475.snappy.parquet is not a Parquet file. "
               "Expected magic number at tail, but found [-50, -85, 1, 8]",
}


@pytest.mark.parametrize("how", sorted(SPARK_MESSAGES))
def test_the_spark_engines_read_failure_is_the_same_line(how, tmp_path):
    from ecdctr_pipeline.core.settings import StoreSettings
    from ecdctr_pipeline.data.delta import spark_read_failure
    from ecdctr_pipeline.data.store import open_store

    root = tmp_path / "store"
    store = open_store(StoreSettings(root=f"file://{root}"))
    line = spark_read_failure(store, RuntimeError(SPARK_MESSAGES[how].format(root=root)))
    assert line is not None and line.startswith("cannot read raw/natural ") and "\n" not in line
    assert "data file dt=2026-05-05/part-00000-f475.snappy.parquet" in line
    assert ("is missing" in line) == (how == "missing") and "ingest day 2026-05-05 again" in line
    assert spark_read_failure(store, RuntimeError("[FAILED_READ_FILE] file:/elsewhere/t/dt=1/x.parquet")) is None


# ------------------------------------------------------------------ a read-only store
def _can_mount_read_only(tmp_path: Path) -> bool:
    d = tmp_path / "probe-mount"
    d.mkdir()
    r = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                        'mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" "$0" && ! touch "$0/x" 2>/dev/null',
                        str(d)], capture_output=True)
    return r.returncode == 0 and shutil.which("unshare") is not None


def run_read_only(root: Path, *argv: str) -> subprocess.CompletedProcess:
    """``ecdctr ARGV`` with ``root`` bind-mounted read-only over itself, in a private mount namespace
    (nothing outside the child process sees the mount)."""
    script = 'mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" "$0" && exec "$@"'
    return subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script, str(root),
                           sys.executable, "-m", "ecdctr_pipeline.app.main", *argv],
                          cwd=REPO, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_a_read_only_store_fails_before_training_and_export_is_one_line(cpm_trained_store, tmp_path, capsys,
                                                                        fault_counts):
    if not _can_mount_read_only(tmp_path):
        pytest.skip("needs unshare and mount (root in a mount namespace)")
    root = tmp_path / "store"
    shutil.copytree(cpm_trained_store, root)
    cfg = config_for(tmp_path, root)
    assert main(["--config", cfg, "train", "actr", "--as-of", "2026-11-24"]) == 0  # blessed: export has work
    assert "BLESSED" in capsys.readouterr().out
    before = _tree(root)
    cases = {"train actr --force": ["train", "actr", "--as-of", "2026-11-24", "--force"],
             "export": ["export", "--as-of", "2026-11-24"],
             "extract --force": ["extract", "complete", "--domain", "ad", "--as-of", "2026-11-24", "--force"],
             "ingest --empty-day": ["ingest", "--domain", "ad", "--empty-day", "2026-11-30"]}
    for name, argv in cases.items():
        r = run_read_only(root, "--config", cfg, *argv)
        lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
        assert r.returncode == 2 and len(lines) == 1, (name, r.returncode, r.stderr[-2000:])
        assert lines[0].startswith("ecdctr: error: ") and "Traceback" not in r.stderr, (name, lines)
        assert "not writable" in lines[0] or "Read-only file system" in lines[0], (name, lines)
        if name.startswith("train"):  # refused before the first epoch (no progress bar, no resume folder)
            assert "epoch" not in r.stderr and "_resume" not in lines[0], lines
        assert _tree(root) == before, name
    fault_counts["commands on a read-only store"] = len(cases)


def test_check_access_writes_a_probe_file(tmp_path, monkeypatch):
    """Permission bits pass (root, or a writable folder on a full disk): the probe write decides."""
    from ecdctr_pipeline.core.errors import StoreError
    from ecdctr_pipeline.data.store import LocalStore

    store = LocalStore(f"file://{tmp_path / 'store'}")
    store.check_access()  # a writable folder: the probe is written and removed
    assert list(tmp_path.iterdir()) == []
    real_open = os.open

    def full(path, flags, *a, **k):
        if ".ecdctr-probe" in str(path):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return real_open(path, flags, *a, **k)

    monkeypatch.setattr(os, "open", full)
    with pytest.raises(StoreError, match="is not writable: writing a file in .* failed .No space left on device"):
        store.check_access()


def test_an_s3_store_that_refuses_puts_is_not_writable():
    from botocore.stub import Stubber

    from ecdctr_pipeline.core.errors import StoreError
    from ecdctr_pipeline.core.settings import StoreSettings
    from ecdctr_pipeline.data.store import S3Store

    store = S3Store(StoreSettings(root="s3://read-only-bucket/p", endpoint_url="http://127.0.0.1:9",
                                  access_key_id="k", secret_access_key="s"))
    with Stubber(store.client) as stub:
        stub.add_response("head_bucket", {}, {"Bucket": "read-only-bucket"})
        stub.add_client_error("put_object", service_error_code="AccessDenied", http_status_code=403)
        with pytest.raises(StoreError, match="s3://read-only-bucket/p is not writable: .*refused .AccessDenied"):
            store.check_access()


# ------------------------------------------------------------------ check cpm by hand
def test_check_cpm_by_hand_sends_no_alert_unless_asked(tmp_path, webhook_receiver, monkeypatch, capsys,
                                                       fault_counts):
    """A-CTR 2026-11-23 (a Monday) whose own CPM is late: the check chooses last week's checkpoint.
    By hand: no ``cpm_fallback`` alert (a warning says none was sent); with ``--alert`` (what the
    DAG's sensor runs) one alert reaches the receiver."""
    from ecdctr_pipeline.core import paths
    from ecdctr_pipeline.core.settings import StoreSettings
    from ecdctr_pipeline.data import artifacts
    from ecdctr_pipeline.data.store import open_store
    from ecdctr_pipeline.orchestration import steps

    url, received = webhook_receiver
    root = tmp_path / "store"
    monkeypatch.setenv("ECDCTR_STORE", f"file://{root}")
    monkeypatch.setenv("ECDCTR_ALERTS__NOTIFIERS", "[webhook]")
    monkeypatch.setenv("ECDCTR_ALERTS__WEBHOOK_URL", f"{url}/hook")
    monkeypatch.setenv("ECDCTR_ACTR__CPM_WAIT_TIMEOUT_S", "3600")
    prev = artifacts.Manifest(kind="cpm_checkpoint", artifact_id="2026-11-16", logical_date="2026-11-16")
    artifacts.publish(open_store(StoreSettings(root=f"file://{root}")), paths.cpm_checkpoint("2026-11-16"),
                      {"model.keras": b"x"}, prev)
    late = ["check", "cpm", "--as-of", "2026-11-23", "--now", "2026-11-23T02:00:00Z"]
    assert main(late) == 0 and "fallback" in capsys.readouterr().out
    assert main([*late, "--no-alert"]) == 0
    assert received == []
    fault_counts["check runs by hand that sent no alert"] = 2
    assert main([*late, "--alert"]) == 0
    assert [a["kind"] for a in received] == ["cpm_fallback"]
    argv = steps.TIERS["actr"].step("wait_for_cpm").argv
    assert "--alert" in argv  # the DAG's sensor keeps alerting


@pytest.mark.parametrize("window", ["walk-then-mkdir", "mkdir-then-create", "mkdir-then-rename"])
def test_a_write_beside_a_delete_that_prunes_its_folder_lands(window, tmp_path, monkeypatch):
    """A delete prunes the folders it empties; a concurrent write into a sibling folder may have
    looked at (or just made) those folders. The delete is run inside the write's critical window,
    every run: the write lands and the delete leaves nothing behind (CI once failed here with
    ``FileNotFoundError`` from ``mkdir`` on ``leases/raw``)."""
    from ecdctr_pipeline.data import store as store_mod

    store = store_mod.LocalStore(f"file://{tmp_path / 'store'}")
    store.put_bytes("leases/other/held.json", b"{}")
    fired = []

    def prune_once():
        if not fired:
            fired.append(True)
            store.delete("leases/other/held.json")  # prunes leases/other and leases
            assert not store.path("leases").exists()

    real_mkdir, real_create, real_replace = os.mkdir, store_mod._create, os.replace
    if window == "walk-then-mkdir":  # the walk saw leases/ exist; it is gone at the mkdir
        monkeypatch.setattr(store_mod.os, "mkdir", lambda d, mode=0o777: (prune_once(), real_mkdir(d, mode))[1])
    elif window == "mkdir-then-create":  # leases/raw made, then pruned before the file is created
        def create(p, **kw):
            if not fired:
                fired.append(True)
                store.delete("leases/other/held.json")
                os.rmdir(p.parent)  # the prune of leases/raw, empty at that instant
                os.rmdir(p.parent.parent)
            return real_create(p, **kw)
        monkeypatch.setattr(store_mod, "_create", create)
    else:  # stage_file: the folder pruned between the mkdir and the rename
        def replace(src, dst):
            if not fired and Path(dst).name == "staged.bin":
                fired.append(True)
                store.delete("leases/other/held.json")
                os.rmdir(Path(dst).parent)
                os.rmdir(Path(dst).parent.parent)
            return real_replace(src, dst)
        monkeypatch.setattr(store_mod.os, "replace", replace)

    if window == "mkdir-then-rename":
        local = tmp_path / "scratch.bin"
        local.write_bytes(b"staged")
        store.stage_file(local, "leases/raw/staged.bin")
        assert store.get_bytes("leases/raw/staged.bin") == b"staged"
    else:
        assert store.put_if_absent("leases/raw/lease.json", b'{"owner": "b"}')
        assert store.get_bytes("leases/raw/lease.json") == b'{"owner": "b"}'
    assert fired, "the delete never ran inside the write's window"
    assert store.list("leases") == [f"leases/raw/{'staged.bin' if window == 'mkdir-then-rename' else 'lease.json'}"]
    assert not store.path("leases/other").exists()
