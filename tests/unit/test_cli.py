import json
import subprocess
import sys

import pytest

from ecdctr_pipeline.app.main import main


def test_plan_json_issue_example(capsys, monkeypatch):
    monkeypatch.delenv("ECDCTR_CONFIG", raising=False)
    assert main(["plan", "--as-of", "2026-11-23", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["cpm"]["window"] == {"start": "2026-10-26", "end": "2026-11-23"}
    assert out["cpm"]["embedding_set"] == "2026-10"
    assert out["cpm"]["embedding_months"] == ["2026-07", "2026-08", "2026-09"]
    assert out["actr"]["cpm_checkpoint"] == "2026-11-23"
    assert out["tpm"]["embedding_set"] == "2026-11"


def test_plan_table(capsys):
    assert main(["plan", "--as-of", "2026-11-25"]) == 0
    out = capsys.readouterr().out
    assert "| A-CTR" in out and "no fallback" in out


def test_bad_date_is_one_line_nonzero(capsys):
    assert main(["plan", "--as-of", "2026-02-30"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "ecdctr: error: invalid as-of date '2026-02-30': expected YYYY-MM-DD"


def test_config_show_masks_and_rejects(capsys, monkeypatch):
    monkeypatch.setenv("ECDCTR_ALERTS__WEBHOOK_URL", "https://hooks.example/very-secret")
    assert main(["config", "show"]) == 0
    out = capsys.readouterr().out
    assert "very-secret" not in out and "webhook_url: '**********'" in out
    monkeypatch.setenv("ECDCTR_CALENDAR__CPM_WINDOW_DAYS", "0")
    assert main(["config", "show", "--json"]) == 2
    assert "calendar.cpm_window_days" in capsys.readouterr().err


def test_status_on_empty_store(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("ECDCTR_STORE", f"file://{tmp_path}/store")
    assert main(["status", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["artifacts"] == []


def test_console_script_exit_code(tmp_path):
    r = subprocess.run([sys.executable, "-m", "ecdctr_pipeline.app.main", "plan", "--as-of", "2026-11-24"],
                       capture_output=True, text=True)
    assert r.returncode == 0 and "2026-11-23" in r.stdout


def test_config_before_or_after_the_command(tmp_path, capsys):
    """``ecdctr --config F CMD`` and ``ecdctr CMD --config F`` both use F (argparse's subparser
    defaults used to reset the first form to the embedded default)."""
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"store: {{root: 'file://{tmp_path}/s'}}\n")
    for argv in (["--config", str(cfg), "status", "--json"], ["status", "--config", str(cfg), "--json"]):
        assert main(argv) == 0
        assert json.loads(capsys.readouterr().out)["store"] == f"file://{tmp_path}/s"


def test_quiet_by_default_verbose_on_request(capsys, monkeypatch):
    import logging
    import os

    from ecdctr_pipeline.cli.verbs import log_level

    assert log_level(0, None) == logging.WARNING and log_level(1, None) == logging.INFO
    assert log_level(2, "WARNING") == logging.DEBUG and log_level(0, "info") == logging.INFO  # -v wins over env
    monkeypatch.setenv("ECDCTR_LOG_LEVEL", "loud")
    assert main(["plan", "--as-of", "2026-11-24"]) == 2
    assert capsys.readouterr().err.strip() == ("ecdctr: error: ECDCTR_LOG_LEVEL='loud': expected one of DEBUG, INFO, "
                                               "WARNING, ERROR")
    # TensorFlow's C++ start-up lines (absl's pre-init warning, the CUDA stub) never reach a quiet console
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    code = ("from ecdctr_pipeline.cli.verbs import _import_tensorflow_quietly as q; q(); import tensorflow as tf; "
            "tf.config.list_physical_devices(); print('ok')")
    r = subprocess.run([sys.executable, "-c", code], env={**env, "TF_CPP_MIN_LOG_LEVEL": "3"}, capture_output=True,
                       text=True, timeout=300)
    assert (r.returncode, r.stdout.strip(), r.stderr) == (0, "ok", "")


def test_dates_and_instants_parse_whole_or_fail_in_one_line(capsys):
    assert main(["plan", "--as-of", "2026-01-14junk"]) == 2
    assert capsys.readouterr().err.strip() == "ecdctr: error: invalid as-of date '2026-01-14junk': expected YYYY-MM-DD"
    for bad in ("tomorrow", "2026-02-30"):
        assert main(["ingest", "--domain", "ad", "--empty-day", "2026-11-20", "--now", bad]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"ecdctr: error: invalid --now '{bad}': expected an ISO timestamp") and "\n" not in err


def test_a_store_that_does_not_answer_is_one_line(monkeypatch, capsys):
    from tests.conftest import free_port

    port = free_port()  # nothing listens there
    for k, v in {"ECDCTR_STORE": "s3://bucket/prefix", "ECDCTR_STORE__ENDPOINT_URL": f"http://127.0.0.1:{port}",
                 "ECDCTR_STORE__ALLOW_HTTP": "true", "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "y",
                 "AWS_MAX_ATTEMPTS": "1"}.items():
        monkeypatch.setenv(k, v)
    assert main(["status"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("ecdctr: error: the store did not answer (EndpointConnectionError") and "\n" not in err


def test_status_and_backfill_name_the_same_inputs(tmp_path, capsys, monkeypatch):
    """A fallback A-CTR day: ``status`` and the backfill table both say which TPM set and which
    CPM it started from, "(fallback)" marked, from the one labelling function."""
    from ecdctr_pipeline.app.backfill import Row, _with_inputs
    from ecdctr_pipeline.core import paths
    from ecdctr_pipeline.core.settings import StoreSettings
    from ecdctr_pipeline.data import artifacts
    from ecdctr_pipeline.data.store import open_store

    monkeypatch.setenv("ECDCTR_STORE", f"file://{tmp_path}/store")
    store = open_store(StoreSettings(root=f"file://{tmp_path}/store"))
    inputs = artifacts.Inputs(embedding_set="2026-10", embedding_months=["2026-07", "2026-08", "2026-09"],
                              cpm_checkpoint="2026-11-16")
    for day, fallback in (("2026-11-23", True), ("2026-11-24", False)):
        artifacts.publish(store, paths.actr_model(day), {"model.keras": b"x"}, artifacts.Manifest(
            kind="actr_model", artifact_id=day, logical_date=day, inputs=inputs,
            extra={"cpm_choice": {"fallback": fallback}}))
    assert main(["status", "--json"]) == 0
    arts = {a["id"]: a for a in json.loads(capsys.readouterr().out)["artifacts"]}
    assert arts["2026-11-23"]["cpm_label"] == "2026-11-16 (fallback)" and arts["2026-11-23"]["cpm_fallback"]
    assert arts["2026-11-24"]["cpm_label"] == "2026-11-16" and not arts["2026-11-24"]["cpm_fallback"]
    assert main(["status"]) == 0
    table = capsys.readouterr().out
    assert "| 2026-10 (2026-07, 2026-08, 2026-09) | 2026-11-16 (fallback) |" in table
    for day in ("2026-11-23", "2026-11-24"):
        row = _with_inputs(store, "actr", Row(tier="actr", logical_date=day, status="done", seconds=0.0))
        assert (row.embedding_set, row.cpm_checkpoint) == (arts[day]["embedding_set_label"], arts[day]["cpm_label"])


def test_a_pod_writes_its_result_where_the_xcom_sidecar_reads_it(tmp_path, capsys, monkeypatch):
    """ECDCTR_RESULT_FILE (set in every pod KubernetesPodOperator runs with do_xcom_push): the
    command's JSON result lands there whole, as `--json` prints it; a failed command writes none."""
    out = tmp_path / "airflow" / "xcom" / "return.json"
    monkeypatch.setenv("ECDCTR_RESULT_FILE", str(out))
    assert main(["plan", "--as-of", "2026-11-23", "--json"]) == 0
    assert json.loads(out.read_text()) == json.loads(capsys.readouterr().out)
    assert [p.name for p in out.parent.iterdir()] == ["return.json"]  # no temporary file left
    out.unlink()
    assert main(["plan", "--as-of", "2026-02-30"]) == 2
    assert not out.exists()


def test_version_and_a_dry_run_backfill(tmp_path, capsys, monkeypatch, caplog):
    """``--version`` prints the code version manifests record; ``backfill --dry-run`` prints each
    run's steps (``--steps`` plus the sensors and branches) with their argv and writes nothing."""
    from ecdctr_pipeline.data.artifacts import code_version

    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out.strip() == f"ecdctr {code_version()}"
    monkeypatch.setenv("ECDCTR_STORE", f"file://{tmp_path}/store")
    assert main(["backfill", "--from", "2026-11-23", "--to", "2026-11-24", "--tiers", "actr", "--steps",
                 "export_serving", "--dry-run", "--force", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["logical_date"], r["status"], r["steps"]) for r in rows] == [
        (d, "planned", ["wait_for_cpm", "bless", "export_serving"]) for d in ("2026-11-23", "2026-11-24")]
    assert rows[1]["results"]["export_serving"] == "ecdctr export --as-of 2026-11-24 --json --force"
    assert rows[1]["results"]["wait_for_cpm"] == "ecdctr check cpm --as-of 2026-11-24 --alert --json"
    assert not (tmp_path / "store").exists() or not any((tmp_path / "store").rglob("*.json"))
    # a store that holds nothing (a mistyped ECDCTR_STORE, say) is reported as such, with a warning
    assert main(["status", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["store_empty"] is True
    assert "holds nothing (it may not exist" in caplog.text


def test_leases_list_and_break(tmp_path, capsys, monkeypatch):
    """``leases list`` shows each lease's holder and state; ``leases break`` removes an expired
    one, refuses a live one (one line naming the holder) unless ``--force``, and names an unknown key."""
    import time

    from ecdctr_pipeline.core.settings import StoreSettings
    from ecdctr_pipeline.data.store import open_store

    monkeypatch.setenv("ECDCTR_STORE", f"file://{tmp_path}/store")
    store = open_store(StoreSettings(root=f"file://{tmp_path}/store"))
    now = time.time()
    for key, expires in (("leases/features/complete/ad.json", now + 600), ("leases/artifacts/x.json", now - 5)):
        store.put_bytes(key, json.dumps({"owner": f"writer of {key}", "host": "elsewhere", "pid": 7,
                                         "renewed": now - 10, "expires": expires}).encode())
    assert main(["leases", "list", "--json"]) == 0
    rows = {r["key"]: r for r in json.loads(capsys.readouterr().out)}
    assert {k: r["state"] for k, r in rows.items()} == {"leases/artifacts/x.json": "expired",
                                                         "leases/features/complete/ad.json": "live"}
    assert rows["leases/features/complete/ad.json"]["owner"] == "writer of leases/features/complete/ad.json"
    assert main(["leases", "break", "leases/artifacts/x.json"]) == 0
    capsys.readouterr()
    assert main(["leases", "break", "leases/features/complete/ad.json"]) != 0
    err = capsys.readouterr().err
    assert "is live (held by writer of leases/features/complete/ad.json, pid 7 on elsewhere" in err
    assert len(err.strip().splitlines()) == 1 and store.exists("leases/features/complete/ad.json")
    assert main(["leases", "break", "leases/nope.json"]) != 0 and "no lease 'leases/nope.json'" in capsys.readouterr().err
    assert main(["leases", "break", "leases/features/complete/ad.json", "--force"]) == 0
    assert not store.list("leases/")
    assert main(["leases", "list"]) == 0 and "(no leases" in capsys.readouterr().out


def test_help_names_the_defaults(capsys):
    """A bare long-running command must not surprise: its help says what it runs by default."""
    with pytest.raises(SystemExit):
        main(["efficiency", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "<scale>:table1 at the paper's Table 1 volume ratios (default: medium)" in text and "(default: 2)" in text
    with pytest.raises(SystemExit):
        main(["backfill", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: tpm,cpm,actr)" in text and "(default: False)" not in text


def test_shell_completion_answers_commands_and_options(tmp_path):
    """``eval "$(register-python-argcomplete ecdctr)"``: the shell asks ecdctr (argcomplete's
    protocol) and gets the commands and the options of the one typed so far."""
    import os

    def complete(line: str) -> list[str]:
        out = tmp_path / "completions"
        env = {**os.environ, "_ARGCOMPLETE": "1", "_ARGCOMPLETE_IFS": "\n", "COMP_LINE": line,
               "COMP_POINT": str(len(line)), "_ARGCOMPLETE_STDOUT_FILENAME": str(out)}
        r = subprocess.run([sys.executable, "-m", "ecdctr_pipeline.app.main"], env=env, capture_output=True,
                           text=True, timeout=120)
        assert r.returncode == 0, r.stderr[-1000:]
        return [c.strip() for c in out.read_text().split("\n") if c.strip()]

    assert complete("ecdctr lea") == ["leases"]
    assert set(complete("ecdctr backfill --")) >= {"--dry-run", "--fail-fast", "--steps", "--force", "--tiers"}
    assert complete("ecdctr leases b") == ["break"]
