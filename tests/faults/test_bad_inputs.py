"""Fault suite, bad input: a corpus generated here (nothing committed) of broken ingest files,
score inputs, command lines, settings and schemas. Every case must end in one line
``ecdctr: error: …`` (no traceback, at most 400 characters: long values are cut), exit 2, and
leave the store exactly as it was (same files, same raw table version)."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest

from ecdctr_pipeline.app.main import main

pytestmark = pytest.mark.faults

NOW = "2026-11-27T12:00:00Z"
GOOD = {"event_time": "2026-11-20T0{i}:00:00Z", "user_id": "{u}", "item_id": "1{i}", "category_id": "1",
        "click": "{c}", "user_age": "2", "user_gender": "1", "user_city": "5", "item_brand": "7", "item_price": "3",
        "hour": "{i}", "weekday": "4", "position": "0", "device": "1"}


def good_rows(n: int = 6) -> list[dict]:
    return [{k: v.format(i=i, u=i % 3, c=i % 2) for k, v in GOOD.items()} for i in range(n)]


def csv(path: Path, records: list[dict], columns: list[str] | None = None) -> Path:
    cols = columns or list(records[0])
    pcsv.write_csv(pa.table({c: [r.get(c) for r in records] for c in cols}), path)
    return path


def with_value(column: str, value, row: int = 2) -> list[dict]:
    recs = good_rows()
    recs[row] = {**recs[row], column: value}
    return recs


def _ingest_corpus(d: Path) -> dict[str, tuple[Path, str]]:
    """name → (input path, a word the error must name)."""
    cases: dict[str, tuple[Path, str]] = {}
    d.mkdir()

    def add(name, path, word):
        cases[name] = (path, word)

    for col in GOOD:  # every column missing
        recs = [{k: v for k, v in r.items() if k != col} for r in good_rows()]
        add(f"missing {col}", csv(d / f"missing-{col}.csv", recs), col)
    add("extra column", csv(d / "extra.csv", [{**r, "user_mood": "3"} for r in good_rows()]), "user_mood")
    dup = d / "dup-cols.csv"
    dup.write_text(",".join(list(GOOD) + ["click"]) + "\n" + ",".join(list(good_rows()[0].values()) + ["0"]) + "\n")
    add("duplicate column name", dup, "click")
    header_only = d / "header-only.csv"
    header_only.write_text(",".join(GOOD) + "\n")
    add("no rows", header_only, "no rows")
    for col in ("user_id", "item_id", "category_id", "user_age", "hour", "device"):
        add(f"text in {col}", csv(d / f"text-{col}.csv", with_value(col, "abc")), col)
    add("fractional id", csv(d / "frac.csv", with_value("user_id", "1.5")), "user_id")
    add("20-digit id", csv(d / "long.csv", with_value("item_id", "9" * 20)), "item_id")
    add("1e30 id", csv(d / "huge.csv", with_value("user_id", "1e30")), "user_id")
    vocab = {"user_age": 8, "user_gender": 3, "user_city": 64, "item_price": 10, "hour": 24, "weekday": 7,
             "position": 20, "device": 4}
    for col, n in vocab.items():
        add(f"{col} outside its vocabulary", csv(d / f"vocab-{col}.csv", with_value(col, str(n))), col)
    add("negative category", csv(d / "neg.csv", with_value("user_age", "-1")), "user_age")
    add("int8 overflow", csv(d / "int8.csv", with_value("position", "300")), "position")
    add("click 2", csv(d / "click2.csv", with_value("click", "2")), "click")
    add("null click", csv(d / "click-null.csv", with_value("click", None)), "click")
    add("null user_id", csv(d / "user-null.csv", with_value("user_id", None)), "user_id")
    add("null event_time", csv(d / "time-null.csv", with_value("event_time", None)), "event_time")
    add("unparseable time", csv(d / "time-bad.csv", with_value("event_time", "yesterday")), "event_time")
    add("future time", csv(d / "time-future.csv", with_value("event_time", "2027-01-01T00:00:00Z")), "event_time")
    add("year-1 time", csv(d / "time-1.csv", with_value("event_time", "0001-01-01T00:00:00Z")), "event_time")
    add("epoch-0 time", csv(d / "time-0.csv", with_value("event_time", "1970-01-01T00:00:00Z")), "event_time")
    recs = good_rows()
    add("duplicate impression", csv(d / "dup-row.csv", recs + [recs[1]]), "duplicate")
    add("100 KB string", csv(d / "big-string.csv", with_value("item_brand", "x" * 100_000)), "item_brand")
    t = pa.table({k: [r[k] for r in good_rows()] for k in GOOD})
    t = t.set_column(t.schema.get_field_index("user_id"), "user_id", pa.array([2**63 + 5] * t.num_rows, pa.uint64()))
    pq.write_table(t, d / "uint64.parquet")
    add("uint64 above int64", d / "uint64.parquet", "user_id")
    t = pa.table({k: [r[k] for r in good_rows()] for k in GOOD})
    t = t.set_column(t.schema.get_field_index("hour"), "hour", pa.array([[1]] * t.num_rows))
    pq.write_table(t, d / "list-col.parquet")
    add("list-typed column", d / "list-col.parquet", "hour")
    t = pa.table({k: [r[k] for r in good_rows()] for k in GOOD})
    future = pa.array([dt.datetime(2027, 1, 1, tzinfo=dt.timezone.utc)] * t.num_rows, pa.timestamp("us", tz="UTC"))
    pq.write_table(t.set_column(t.schema.get_field_index("event_time"), "event_time", future), d / "ts-future.parquet")
    add("future Parquet timestamp (examples as ISO text)", d / "ts-future.parquet", "=2027-01-01T00:00:00+00:00")
    mixed = d / "mixed"
    mixed.mkdir()
    csv(mixed / "a.csv", good_rows())
    pq.write_table(pa.table({k: [r[k] for r in good_rows()] for k in GOOD}), mixed / "b.parquet")
    add("folder mixing CSV and Parquet", mixed, "mix")
    (d / "garbage.parquet").write_bytes(os.urandom(2048))
    add("garbage Parquet", d / "garbage.parquet", "garbage.parquet")
    (d / "latin1.csv").write_bytes(",".join(GOOD).encode() + b"\n\xe9\xff\xfe," * 3 + b"\n")
    add("non-UTF-8 CSV", d / "latin1.csv", "latin1.csv")
    (d / "empty-dir").mkdir()
    add("empty folder", d / "empty-dir", "empty-dir")
    add("missing path", d / "nope.csv", "nope.csv")
    (d / "rows.txt").write_text("a,b\n1,2\n")
    add("unsupported extension", d / "rows.txt", "rows.txt")
    return cases


def _tree(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_size for p in sorted(root.rglob("*")) if p.is_file()}


def _one_line_error(capsys, what: str, word: str | None = None) -> str:
    out = capsys.readouterr()
    lines = [ln for ln in out.err.splitlines() if ln.strip()]
    assert len(lines) == 1, (what, out.err[-1500:])
    line = lines[0]
    assert line.startswith("ecdctr: error: ") and "Traceback" not in out.err + out.out, (what, line)
    assert len(line) <= 400, (what, len(line))
    if word is not None:
        assert word.lower() in line.lower(), (what, line)
    return line


def test_ingest_corpus_rejects_every_case_and_changes_nothing(tmp_path, capsys, monkeypatch, fault_counts):
    from ecdctr_pipeline.core.settings import StoreSettings
    from ecdctr_pipeline.data import delta
    from ecdctr_pipeline.data.store import open_store

    root = tmp_path / "store"
    monkeypatch.setenv("ECDCTR_STORE", f"file://{root}")
    good = csv(tmp_path / "good.csv", good_rows())
    assert main(["ingest", "--domain", "natural", "--input", str(good), "--now", NOW]) == 0
    capsys.readouterr()
    store = open_store(StoreSettings(root=f"file://{root}"))
    version, before = delta.version(store, "raw/natural"), _tree(root)
    cases = _ingest_corpus(tmp_path / "corpus")
    assert len(cases) >= 50
    for name, (path, word) in cases.items():
        assert main(["ingest", "--domain", "natural", "--input", str(path), "--now", NOW]) == 2, name
        _one_line_error(capsys, name, word)
        assert delta.version(store, "raw/natural") == version and _tree(root) == before, name
    fault_counts["bad ingest inputs"] = len(cases)


def _score_corpus(d: Path) -> dict[str, tuple[Path, str | None]]:
    cases: dict[str, tuple[Path, str | None]] = {}

    def add(name, text: str | bytes, word, suffix=".json"):
        p = d / f"{len(cases):02d}{suffix}"
        p.write_bytes(text if isinstance(text, bytes) else text.encode())
        cases[name] = (p, word)

    add("not JSON", "{user_id: 1", "not JSON")
    add("empty list", "[]", "no rows")
    add("empty object", "{}", "expected")
    add("list of ints", "[1, 2, 3]", "expected")
    add("a string", '"rows"', "expected")
    add("text value", json.dumps([{"user_id": "7", "item_id": 1}]), "user_id")
    add("fractional id", json.dumps([{"user_id": 1.7, "item_id": 1}]), "user_id")
    add("int above int64", json.dumps([{"user_id": 2**70, "item_id": 1}]), "user_id")
    add("boolean", json.dumps([{"user_id": True, "item_id": 1}]), "user_id")
    add("null", json.dumps([{"user_id": None, "item_id": 1}]), "user_id")
    add("extra field in row 2", json.dumps([{"user_id": 1, "item_id": 1}, {"user_id": 1, "item_id": 1, "x": 2}]), "row 2")
    add("missing field in row 3", json.dumps([{"user_id": 1, "item_id": 1}] * 2 + [{"user_id": 1}]), "row 3")
    add("column not a list", json.dumps({"user_id": 1, "item_id": [1]}), "user_id")
    add("nested list in a scalar column", json.dumps([{"user_id": [[1]], "item_id": 1}]), "user_id")
    add("non-UTF-8", b"\xff\xfe[\x00", "not JSON")
    add("garbage Parquet", os.urandom(512), "parquet", suffix=".parquet")
    add("unsupported extension", "user_id,item_id\n1,2\n", "unsupported", suffix=".csv")
    cases["missing file"] = (d / "nope.json", "not found")
    return cases


def test_score_corpus_rejects_every_case_before_any_request(tmp_path, capsys, fault_counts):
    """The rows are checked before a request is made: the REST target below is never reached
    (nothing listens on it), so a case that passed the checks would fail differently."""
    (tmp_path / "score").mkdir()
    cases = _score_corpus(tmp_path / "score")
    for name, (path, word) in cases.items():
        assert main(["score", "--input", str(path), "--rest", "http://127.0.0.1:9"]) == 2, name
        line = _one_line_error(capsys, name, word)
        assert "127.0.0.1:9" not in line, (name, line)
    fault_counts["bad score inputs"] = len(cases)


def test_command_line_settings_and_schema_corpus(tmp_path, capsys, monkeypatch, fault_counts):
    monkeypatch.setenv("ECDCTR_STORE", f"file://{tmp_path / 'store'}")
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("store: [unclosed\n")
    latin = tmp_path / "latin.yaml"
    latin.write_bytes(b"store:\n  root: file:///tmp/\xe9\n")
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("cpm:\n  learning_rat: 0.1\n")
    python_file = tmp_path / "settings.py"
    python_file.write_text("def main(): pass\n")

    def schema_file(name, body):
        p = tmp_path / name
        p.write_text(json.dumps(body))
        return str(p)

    base = {"name": "s", "version": 1}
    cases = {
        "impossible --as-of": (["plan", "--as-of", "2026-02-30"], "2026-02-30"),
        "--as-of with junk": (["plan", "--as-of", "2026-01-14junk"], "2026-01-14junk"),
        "empty --as-of": (["plan", "--as-of", ""], "as-of"),
        "month as a day": (["train", "tpm", "--as-of", "2026-13"], "2026-13"),
        "--now tomorrow": (["ingest", "--domain", "ad", "--input", str(tmp_path), "--now", "tomorrow"], "tomorrow"),
        "--now impossible": (["ingest", "--domain", "ad", "--input", str(tmp_path), "--now", "2026-02-30"],
                             "2026-02-30"),
        "impossible empty day": (["ingest", "--domain", "ad", "--empty-day", "2026-02-30"], "2026-02-30"),
        "unknown tier": (["backfill", "--from", "2026-11-01", "--to", "2026-11-02", "--tiers", "foo"], "foo"),
        "range backwards": (["backfill", "--from", "2026-11-02", "--to", "2026-11-01"], "before"),
        "unknown backfill step": (["backfill", "--from", "2026-11-01", "--to", "2026-11-02", "--tiers", "actr",
                                   "--steps", "export_serving,exprot"], "exprot"),
        "missing config": (["--config", str(tmp_path / "nope.yaml"), "status"], "nope.yaml"),
        "invalid YAML config": (["--config", str(bad_yaml), "status"], "bad.yaml"),
        "non-UTF-8 config": (["--config", str(latin), "status"], "UTF-8"),
        "unknown setting": (["--config", str(unknown), "status"], "cpm.learning_rat"),
        "a Python file as --config": (["--config", str(python_file), "status"], "not a settings file"),
        "simulate --out into a non-empty folder": (["simulate", "--start", "2026-11-01", "--end", "2026-11-01",
                                                    "--scale", "tiny", "--out", str(tmp_path)], "not an empty folder"),
        "simulate --out a backwards range": (["simulate", "--start", "2026-11-02", "--end", "2026-11-01",
                                              "--scale", "tiny", "--out", str(tmp_path / "logs")], "before"),
    }
    env_cases = {
        "infinite learning rate": ({"ECDCTR_TPM__LEARNING_RATE": ".inf"}, "tpm.learning_rate"),
        "negative layer width": ({"ECDCTR_TPM__HIDDEN_UNITS": "[-5, 0]"}, "tpm.hidden_units"),
        "bad store root": ({"ECDCTR_STORE": "ftp://x"}, "store.root"),
        "bucket name '..'": ({"ECDCTR_STORE": "s3://../../x"}, "bucket name '..' is invalid"),
        "bucket name with capitals": ({"ECDCTR_STORE": "s3://My_Bucket/x"}, "bucket name 'My_Bucket' is invalid"),
        "one-letter bucket name": ({"ECDCTR_STORE": "s3://b/x"}, "bucket name 'b' is invalid"),
        "'..' in the store prefix": ({"ECDCTR_STORE": "s3://ecdctr-data/../x"}, "'..' segments"),
        "file:// webhook": ({"ECDCTR_ALERTS__WEBHOOK_URL": "file:///var/hooks/x"}, "http:// or https://"),
        "webhook without a scheme": ({"ECDCTR_ALERTS__WEBHOOK_URL": "hooks.example/x"}, "http:// or https://"),
        "a Python file as the schema": ({"ECDCTR_FEATURES__RAW_SCHEMA": str(python_file)}, "not a feature schema"),
        "schema file missing": ({"ECDCTR_FEATURES__RAW_SCHEMA": str(tmp_path / "none.yaml")}, "none.yaml"),
        "schema column twice": ({"ECDCTR_FEATURES__RAW_SCHEMA": schema_file("twice.json", {**base, "context": [
            {"name": "hour", "type": "int8", "vocab_size": 24}, {"name": "hour", "type": "int8", "vocab_size": 24}]})},
            "hour"),
        "schema reuses a fixed column": ({"ECDCTR_FEATURES__RAW_SCHEMA": schema_file("fixed.json", {**base, "context": [
            {"name": "click", "type": "int8", "vocab_size": 2}]})}, "click"),
        "schema vocabulary too big for its type": ({"ECDCTR_FEATURES__RAW_SCHEMA": schema_file("big.json", {
            **base, "context": [{"name": "page", "type": "int8", "vocab_size": 1000}]})}, "page"),
        "schema column without vocabulary": ({"ECDCTR_FEATURES__RAW_SCHEMA": schema_file("novocab.json", {
            **base, "context": [{"name": "page", "type": "int8"}]})}, "page"),
        "schema float column": ({"ECDCTR_FEATURES__RAW_SCHEMA": schema_file("float.json", {
            **base, "context": [{"name": "page", "type": "float32", "vocab_size": 3}]})}, "type"),
        "schema source clash": ({"ECDCTR_FEATURES__RAW_SCHEMA": schema_file("clash.json", {
            **base, "sources": {"user_id": "item_id"}})}, "item_id"),
        "hash_buckets of a non-hashed column": ({"ECDCTR_FEATURES__HASH_BUCKETS":
                                                 "{user_id: 5, item_id: 5, category_id: 5, user_age: 3}"}, "user_age"),
    }
    before = sorted((tmp_path / "store").rglob("*")) if (tmp_path / "store").exists() else []
    for name, (argv, word) in cases.items():
        assert main(argv) == 2, name
        _one_line_error(capsys, name, word)
    for name, (env, word) in env_cases.items():
        with monkeypatch.context() as m:
            for k, v in env.items():
                m.setenv(k, v)
            assert main(["status"]) == 2, name
            _one_line_error(capsys, name, word)
    after = sorted((tmp_path / "store").rglob("*")) if (tmp_path / "store").exists() else []
    assert after == before and not (tmp_path / "logs").exists()
    assert not list(tmp_path.glob(".*.tmp-*"))  # no staging folder left by a refused simulate --out
    fault_counts["bad command lines, settings and schemas"] = len(cases) + len(env_cases)


def test_settings_errors_never_echo_a_file_or_a_long_value(tmp_path, capsys, monkeypatch, fault_counts):
    """A file that is not settings is named, its text is not shown; a value in an error is a short
    excerpt (at most 40 characters), however long or deeply nested the value is."""
    monkeypatch.setenv("ECDCTR_STORE", f"file://{tmp_path / 'store'}")
    files = {
        "a Python file": ("launch.py", "def launch_the_missiles(): pass\n", "launch_the_missiles"),
        "a token file": ("token.yaml", "GITHUB_TOKEN_ghp_abc: ghp_0123456789\n", "ghp_"),
        "a shell script": ("run.sh", "#!/bin/sh\nexport PASSWORD_X=hunter2: x\n", "hunter2"),
    }
    n = 0
    for name, (fname, text, hidden) in files.items():
        path = tmp_path / fname
        path.write_text(text)
        assert main(["--config", str(path), "config", "show"]) == 2, name
        line = _one_line_error(capsys, name, fname)
        assert hidden not in line, (name, line)
        n += 1
    values = {
        "a 10 000-item list": "store:\n  root: [" + ", ".join(["12345678"] * 10_000) + "]\n",
        "a 5 000-character string": "store:\n  root: " + "x" * 5_000 + "\n",
        "a nested mapping in a list": "cpm:\n  hidden_units: [[{a: " + "y" * 500 + "}]]\n",
    }
    for name, text in values.items():
        path = tmp_path / "long.yaml"
        path.write_text(text)
        assert main(["--config", str(path), "config", "show"]) == 2, name
        line = _one_line_error(capsys, name)
        got = line.split("(got ", 1)[1].rsplit(")", 1)[0] if "(got " in line else ""
        assert len(got) <= 40 and "12345678, 12345678, 12345678, 12345678, 12345678" not in line, (name, line)
        assert len(line) <= 300, (name, len(line))
        n += 1
    fault_counts["settings files and long values not echoed"] = n


BOMB = ("[&a [1,1,1,1,1,1,1,1,1], &b [*a,*a,*a,*a,*a,*a,*a,*a,*a], &c [*b,*b,*b,*b,*b,*b,*b,*b,*b], "
        "&d [*c,*c,*c,*c,*c,*c,*c,*c,*c], &e [*d,*d,*d,*d,*d,*d,*d,*d,*d], &f [*e,*e,*e,*e,*e,*e,*e,*e,*e], "
        "&g [*f,*f,*f,*f,*f,*f,*f,*f,*f], &h [*g,*g,*g,*g,*g,*g,*g,*g,*g], [*h,*h,*h,*h,*h,*h,*h,*h,*h]]")


def _limited(argv: list[str], env: dict[str, str], limit_bytes: int = 2 << 30) -> subprocess.CompletedProcess:
    """``ecdctr ARGV`` in a child limited to ``limit_bytes`` of address space and 60 s (a
    regression fails fast instead of taking the host's memory)."""
    import resource

    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (limit_bytes, limit_bytes))

    return subprocess.run([sys.executable, "-m", "ecdctr_pipeline.app.main", *argv], preexec_fn=limit,
                          env={**os.environ, **env}, capture_output=True, text=True, timeout=60)


def test_a_yaml_alias_bomb_is_refused_in_one_line(tmp_path, fault_counts):
    """~550 bytes of nested YAML aliases stand for 387 million values: refused before anything
    walks them, in settings files, schema files and environment values."""
    settings = tmp_path / "bomb.yaml"
    settings.write_text(f"store:\n  root: {BOMB}\n")
    schema = tmp_path / "schema-bomb.yaml"
    schema.write_text(f"name: s\nversion: 1\ncontext: {BOMB}\n")
    recursive = tmp_path / "recursive.yaml"
    recursive.write_text("cpm:\n  hidden_units: &a [1, *a]\n")
    merged = tmp_path / "merge.yaml"  # anchors themselves stay usable
    merged.write_text("tpm: &base\n  seed: 7\ncpm:\n  <<: *base\n  epochs: 2\n")
    base_env = {"ECDCTR_STORE": f"file://{tmp_path / 'store'}"}
    cases = {
        "settings file": (["--config", str(settings), "config", "show"], {}, "bomb.yaml"),
        "schema file": (["config", "show"], {"ECDCTR_FEATURES__RAW_SCHEMA": str(schema)}, "schema-bomb.yaml"),
        "environment value": (["config", "show"], {"ECDCTR_CPM__HIDDEN_UNITS": BOMB}, "ECDCTR_CPM__HIDDEN_UNITS"),
        "recursive alias": (["--config", str(recursive), "config", "show"], {}, "recursive"),
    }
    for name, (argv, env, word) in cases.items():
        r = _limited(argv, {**base_env, **env})
        lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
        assert r.returncode == 2 and len(lines) == 1, (name, r.returncode, r.stderr[-1500:])
        assert lines[0].startswith("ecdctr: error: ") and word in lines[0] and len(lines[0]) <= 400, (name, lines)
        assert "alias" in lines[0], (name, lines)
    r = _limited(["--config", str(merged), "config", "show", "--json"], base_env)
    assert r.returncode == 0 and json.loads(r.stdout)["cpm"]["seed"] == 7, r.stderr[-1500:]
    fault_counts["YAML alias bombs"] = len(cases)


def test_a_closed_stdout_exits_quietly(tmp_path, fault_counts):
    """``ecdctr … | head -3``: the reader goes away; the command exits 141 (128 + SIGPIPE) and
    prints nothing (it used to blame the store: "the store did not answer (BrokenPipeError)")."""
    env = {**os.environ, "ECDCTR_STORE": f"file://{tmp_path / 'store'}"}
    cases = [["config", "show", "--json"], ["config", "show"], ["plan", "--as-of", "2026-11-24"],
             ["config", "schema", "--json"]]
    for argv in cases:
        read, write = os.pipe()
        os.close(read)  # the reader is gone before the first write
        try:
            r = subprocess.run([sys.executable, "-m", "ecdctr_pipeline.app.main", *argv], stdout=write,
                               stderr=subprocess.PIPE, env=env, text=True, timeout=120)
        finally:
            os.close(write)
        assert r.returncode == 141 and r.stderr.strip() == "", (argv, r.returncode, r.stderr[-1500:])
    fault_counts["closed stdout"] = len(cases)


def test_a_failed_gate_says_what_it_observed(tmp_path, capsys, monkeypatch, fault_counts):
    """A column-map check (click in {0,1}) observes no single value: the gate's line names the
    unexpected values, never "observed None"."""
    import pyarrow.compute as pc

    from ecdctr_pipeline.core.settings import StoreSettings
    from ecdctr_pipeline.data import delta
    from ecdctr_pipeline.data.simulate import World, get_scale
    from ecdctr_pipeline.data.store import open_store

    root = tmp_path / "store"
    monkeypatch.setenv("ECDCTR_STORE", f"file://{root}")
    day = dt.date(2026, 11, 23)
    t = World(get_scale("tiny"), 5).day("ad", day)
    t = t.append_column("dt", pa.array([day.isoformat()] * t.num_rows))
    click = pc.cast(t["click"], pa.int8()).to_pylist()
    click[0] = 2
    t = t.set_column(t.schema.get_field_index("click"), "click", pa.array(click, t.schema.field("click").type))
    delta.write(open_store(StoreSettings(root=f"file://{root}")), "raw/ad", t)
    assert main(["gate", "actr", "--as-of", "2026-11-24"]) == 2
    line = _one_line_error(capsys, "gate", "click")
    assert "None" not in line and "1 unexpected value(s), e.g. [2]" in line, line
    fault_counts["gate failures without an observed value"] = 1
