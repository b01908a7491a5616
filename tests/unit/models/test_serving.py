"""Serving: merged-table equivalence, the SavedModel and its warm-up file, export/rollback, clients."""

import json
import shutil
import threading
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pyarrow as pa
import pytest

from ecdctr_pipeline.core.schema import DEFAULT_SCHEMA
from ecdctr_pipeline import tiers
from ecdctr_pipeline.core import calendar, paths
from ecdctr_pipeline.data import artifacts
from ecdctr_pipeline.data.store import open_store
from ecdctr_pipeline.modeling import training
from ecdctr_pipeline.modeling.preprocessing import FeatureLayout, raw_columns
from ecdctr_pipeline.serving import export as serving
from ecdctr_pipeline.core.errors import CorruptArtifactError
from ecdctr_pipeline.serving import pointer
from ecdctr_pipeline.serving.client import GrpcScorer, LocalScorer, RestScorer, ServingError, read_rows

from tests.conftest import tiny_settings


@pytest.fixture(scope="module")
def trained(cpm_trained_store, tmp_path_factory):
    dest = tmp_path_factory.mktemp("served") / "store"
    shutil.copytree(cpm_trained_store, dest)
    s = tiny_settings(f"file://{dest}")
    store = open_store(s.store)
    r = tiers.train("actr", s, store, "2026-11-24")
    assert r.extra["blessed"]
    return s


def _ad_table(s):
    store = open_store(s.store)
    plan = calendar.actr_plan("2026-11-24", s.calendar)
    layout = FeatureLayout.complete(s.features)
    table, _ = training.read_features(store, paths.complete_features("ad"), plan.window, layout, who="test")
    return table, layout


def _with_bad_values(t: pa.Table, rng) -> tuple[pa.Table, dict]:
    """Nulls, negative and out-of-vocabulary values in every vocabulary column, a negative
    counter-free row set kept as is, and over-long ``hist_len`` values."""
    n = t.num_rows
    counts = {}
    for c in DEFAULT_SCHEMA.columns:
        name, vs = c.name, c.vocab_size
        if vs is None or name not in t.column_names:
            continue
        vals = np.asarray(t[name].fill_null(0)).astype(np.int64)
        kind = rng.integers(0, 5, n)  # 0: null, 1: vs (just out of range), 2: huge, 3: negative, 4: as is
        vals = np.where(kind == 1, vs, np.where(kind == 2, 10**9, np.where(kind == 3, -7, vals)))
        mask = kind == 0
        t = t.set_column(t.schema.get_field_index(name), name, pa.array(vals, pa.int64(), mask=mask))
        counts[name] = int((kind != 4).sum())
    hl = np.asarray(t["hist_len"]).astype(np.int64)
    hl[rng.random(n) < 0.1] = 10_000  # longer than max_seq_len: clipped on both paths
    t = t.set_column(t.schema.get_field_index("hist_len"), "hist_len", pa.array(hl))
    return t, counts


def test_merged_serving_model_equals_training_graph_on_10k_rows(trained, tmp_path):
    """The same rows — unknown ids, nulls, out-of-range and negative categories, over-long
    histories — through the training input path and the exported ``serving_default``."""
    s = trained
    store = open_store(s.store)
    actr = training.load_model(store, paths.actr_model("2026-11-24"))
    table, layout = _ad_table(s)
    rng = np.random.default_rng(0)
    t = table.take(pa.array(rng.integers(0, table.num_rows, 10_000)))
    users = np.asarray(t["user_id"]).copy()
    items = np.asarray(t["item_id"]).copy()
    unknown_u = rng.random(10_000) < 0.2
    unknown_i = rng.random(10_000) < 0.2
    users[unknown_u] = 10**12 + np.arange(unknown_u.sum())
    items[unknown_i] = 10**12 + np.arange(unknown_i.sum())
    t = t.set_column(t.schema.get_field_index("user_id"), "user_id", pa.array(users))
    t = t.set_column(t.schema.get_field_index("item_id"), "item_id", pa.array(items))
    t, bad = _with_bad_values(t, rng)
    assert bad and all(c > 5000 for c in bad.values())
    want = training.predict(actr, raw_columns(t, layout), layout)
    path = serving.export_saved_model(serving.build_serving_model(actr, s), s, tmp_path / "1")
    got = LocalScorer(path).predict(serving.raw_rows(t, s))
    assert np.all(np.isfinite(want)) and np.all(np.isfinite(got))
    assert unknown_u.sum() > 1000 and unknown_i.sum() > 1000
    assert np.max(np.abs(got - want)) <= 1e-5
    assert np.std(want) > 1e-3  # the model discriminates: the comparison is not between constants


def test_export_version_signature_warmup_and_lineage(trained):
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2

    s = trained
    store = open_store(s.store)
    r = serving.export_version(s, store, "2026-11-24")
    assert r["version"] == 1 and not r["skipped"] and r["equivalence_max_abs_diff"] <= 1e-5
    m = artifacts.read_manifest(store, paths.serving_version(1))
    assert m.inputs.actr_model == "2026-11-24" and m.inputs.cpm_checkpoint == "2026-11-23"
    assert m.inputs.embedding_set == "2026-10" and m.inputs.embedding_months == ["2026-07", "2026-08", "2026-09"]
    local = store.local_path(paths.serving_version(1))
    assert (local / "saved_model.pb").is_file()  # flat TF Serving layout
    loaded = tf.saved_model.load(str(local))
    sig = loaded.signatures["serving_default"]
    spec = serving.serving_input_spec(s)
    got = {k: (v.dtype.name, tuple(v.shape)) for k, v in sig.structured_input_signature[1].items()}
    assert got == spec
    assert list(sig.structured_outputs) == ["ctr"]
    records = list(tf.data.TFRecordDataset(str(local / serving.WARMUP)))
    assert len(records) == 5
    for rec in records:
        log = prediction_log_pb2.PredictionLog.FromString(rec.numpy())
        assert log.predict_log.request.model_spec.name == "actr"
        assert set(log.predict_log.request.inputs) == set(spec)
    config = store.get_bytes(pointer.MODEL_CONFIG).decode()
    assert "versions: 1" in config and 'name: "actr"' in config
    # idempotent for the date
    assert serving.export_version(s, store, "2026-11-24")["skipped"]


def test_export_refuses_rejected_and_rollback(trained, monkeypatch):
    s = trained
    store = open_store(s.store)
    serving.export_version(s, store, "2026-11-24")
    second = serving.export_version(s, store, "2026-11-24", force=True)
    assert second["version"] == 2 and pointer.read_served(store)["version"] == 2
    state = pointer.rollback(store, s.serving.model_name)
    assert state["version"] == 1 and "versions: 1" in store.get_bytes(pointer.MODEL_CONFIG).decode()
    with pytest.raises(Exception, match="no published serving version older than 1"):
        pointer.rollback(store, s.serving.model_name)
    # a retry never undoes a rollback: version 2 was served once
    again = serving.export_version(s, store, "2026-11-24")
    assert again["skipped"] and again["version"] == 2 and pointer.read_served(store)["version"] == 1

    # killed between the new version's manifest and the served pointer: the retry finishes it
    def killed(*a, **kw):
        raise KeyboardInterrupt

    monkeypatch.setattr("ecdctr_pipeline.serving.export.set_served", killed)
    with pytest.raises(KeyboardInterrupt):
        serving.export_version(s, store, "2026-11-24", force=True)
    monkeypatch.undo()
    assert artifacts.find_manifest(store, paths.serving_version(3)) is not None
    assert pointer.read_served(store)["version"] == 1
    resumed = serving.export_version(s, store, "2026-11-24")
    assert (resumed["resumed"], resumed["version"], resumed["served"]) == (True, 3, 3)
    assert pointer.read_served(store)["history"][-1]["reason"] == "export of A-CTR 2026-11-24 (resumed)"
    assert "versions: 3" in store.get_bytes(pointer.MODEL_CONFIG).decode()
    prefix = paths.actr_model("2026-11-24")
    m = artifacts.read_manifest(store, prefix)
    rejected = m.model_copy(update={"blessing": artifacts.Blessing(
        blessed=False, candidate_gauc=0.51, tolerance=0.002, baseline=artifacts.Baseline(model="2026-11-23", gauc=0.6))})
    store.put_bytes(paths.manifest_key(prefix), rejected.to_json())
    with pytest.raises(serving.ExportRefused, match="rejected by its gate .REJECTED: GAUC 0.51 vs served model 2026-11-23"):
        serving.export_version(s, store, "2026-11-24", force=True)
    store.put_bytes(paths.manifest_key(prefix), m.to_json())


# --------------------------------------------------------------------------- clients
def _servicer_base():
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    return prediction_service_pb2_grpc.PredictionServiceServicer


class _PredictionService(_servicer_base()):
    """A stand-in for TF Serving: the TF Serving binary cannot be installed here, so this small
    server implements the same gRPC PredictionService by running the exported SavedModel."""

    def __init__(self, model_path, model_name="actr", version=1):
        self.scorer = LocalScorer(model_path)
        self.model_name, self.version = model_name, version

    def Predict(self, request, context):
        import grpc
        import tensorflow as tf
        from tensorflow_serving.apis import predict_pb2

        if request.model_spec.name != self.model_name or (
                request.model_spec.HasField("version") and request.model_spec.version.value != self.version):
            context.abort(grpc.StatusCode.NOT_FOUND, f"Servable not found for request: {request.model_spec}")
        rows = {k: tf.make_ndarray(v) for k, v in request.inputs.items()}
        try:
            out = self.scorer.predict(rows)
        except ServingError as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        resp = predict_pb2.PredictResponse()
        resp.outputs["ctr"].CopyFrom(tf.make_tensor_proto(out))
        return resp


@pytest.fixture(scope="module")
def exported(trained, tmp_path_factory):
    s = trained
    store = open_store(s.store)
    actr = training.load_model(store, paths.actr_model("2026-11-24"))
    path = serving.export_saved_model(serving.build_serving_model(actr, s), s, tmp_path_factory.mktemp("sm") / "1")
    table, layout = _ad_table(s)
    rows = serving.raw_rows(table.slice(0, 64), s)
    return path, rows, training.predict(actr, raw_columns(table.slice(0, 64), layout), layout)


@pytest.fixture(scope="module")
def grpc_server(exported):
    import grpc
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(_PredictionService(exported[0]), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield f"127.0.0.1:{port}"
    server.stop(0)


def test_grpc_client_scores_and_reports_errors(grpc_server, exported):
    _, rows, want = exported
    scorer = GrpcScorer(grpc_server, "actr", timeout_s=30)
    np.testing.assert_allclose(scorer.predict(rows), want, atol=1e-5)
    with pytest.raises(ServingError, match="model other not found"):
        GrpcScorer(grpc_server, "other", timeout_s=30).predict(rows)
    with pytest.raises(ServingError, match="model actr version 9 not found"):
        GrpcScorer(grpc_server, "actr", version=9, timeout_s=30).predict(rows)
    bad = {k: v for k, v in rows.items() if k != "hour"}
    with pytest.raises(ServingError, match="signature mismatch.*missing input\\(s\\) hour"):
        scorer.predict(bad)


def test_grpc_client_retries_then_reports_unavailable():
    from tests.conftest import free_port

    scorer = GrpcScorer(f"127.0.0.1:{free_port()}", retries=2, backoff_s=0.01, timeout_s=2)
    with pytest.raises(ServingError, match="unavailable after 3 attempt"):
        scorer.predict({"user_id": np.array([1])})


def test_rest_client(exported):
    path, rows, want = exported
    scorer = LocalScorer(path)

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_POST(self):
            if not self.path.startswith("/v1/models/actr"):
                self.send_response(404)
                self.end_headers()
                self.wfile.write(b'{"error": "Servable not found"}')
                return
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            out = scorer.predict({k: np.asarray(v) for k, v in body["inputs"].items()})
            self.send_response(200)
            self.end_headers()
            self.wfile.write(json.dumps({"outputs": out.tolist()}).encode())

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{httpd.server_port}"
        np.testing.assert_allclose(RestScorer(url, timeout_s=30).predict(rows), want, atol=1e-5)
        with pytest.raises(ServingError, match="model nope not found"):
            RestScorer(url, "nope", timeout_s=30).predict(rows)
    finally:
        httpd.shutdown()


def test_read_rows_json_and_parquet(exported, tmp_path):
    _, rows, _ = exported
    cols = {k: v[:3].tolist() for k, v in rows.items()}
    (tmp_path / "r.json").write_text(json.dumps([{k: cols[k][i] for k in cols} for i in range(3)]))
    back = read_rows(tmp_path / "r.json")
    assert set(back) == set(rows) and back["hist_item_ids"].shape == rows["hist_item_ids"][:3].shape
    import pyarrow.parquet as pq

    pq.write_table(pa.table({k: (list(map(list, v[:3])) if v.ndim == 2 else v[:3]) for k, v in rows.items()}),
                   tmp_path / "r.parquet")
    assert np.array_equal(read_rows(tmp_path / "r.parquet")["hist_item_ids"], rows["hist_item_ids"][:3])
    (tmp_path / "r.txt").write_text("x")
    with pytest.raises(ServingError, match="unsupported input"):
        read_rows(tmp_path / "r.txt")


@pytest.mark.parametrize("text, message", [
    pytest.param("not json", "not JSON", id="not-json"),
    pytest.param("{}", "expected a list of row objects or an object of columns", id="empty-object"),
    pytest.param("[1, 2]", "expected a list of row objects", id="list-of-ints"),
    pytest.param('{"user_id": ["a", "b"]}', "column user_id, row 1: 'a' is not an integer", id="string-column"),
    pytest.param('{"user_id": [1.7]}', "column user_id, row 1: 1.7 is not an integer", id="float-not-truncated"),
    pytest.param('{"user_id": [1180591620717411303424]}', "is not an integer within int64", id="beyond-int64"),
    pytest.param('[{"user_id": 1}, {"user_id": 2, "extra": 3}]', "row 2 has other fields than row 1 (extra)",
                 id="extra-field-in-a-later-row"),
    pytest.param('{"user_id": 5}', "column user_id must be a list of values", id="scalar-column"),
])
def test_score_inputs_are_checked_in_one_line(tmp_path, text, message):
    (tmp_path / "rows.json").write_text(text)
    with pytest.raises(ServingError) as exc:
        read_rows(tmp_path / "rows.json")
    assert message in str(exc.value) and "\n" not in str(exc.value)


def test_a_published_version_with_a_flipped_byte_is_refused_and_a_bad_rest_url_named(trained, tmp_path):
    s = trained
    store = open_store(s.store)
    versions = artifacts.list_artifacts(store, "serving_version")
    if not versions:
        serving.export_version(s, store, "2026-11-24")
        versions = artifacts.list_artifacts(store, "serving_version")
    prefix, m = versions[-1]
    copy = tmp_path / "v"
    shutil.copytree(store.local_path(prefix), copy)
    LocalScorer(copy)  # intact: loads
    target = copy / max((e for e in m.files if e.size > 0), key=lambda e: e.size).key
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0xFF
    target.write_bytes(bytes(data))
    with pytest.raises(CorruptArtifactError, match=f"checksum mismatch in file://.*/{target.name}: file differs"):
        LocalScorer(copy)
    with pytest.raises(ServingError, match=r"--rest 'notaurl': expected an http\(s\) URL"):
        RestScorer("notaurl")


# --------------------------------------------------------------------------- scoring a file in batches
def _rows(n: int, seq: int = 3) -> list[dict]:
    return [{"user_id": i, "item_id": 7 * i, "hist_item_ids": [i % 5] * seq} for i in range(n)]


def _write(path, rows: list[dict]):
    import pyarrow.parquet as pq

    if path.suffix == ".parquet":
        pq.write_table(pa.Table.from_pylist(rows), path, row_group_size=700)
    elif path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    else:
        path.write_text(json.dumps(rows, indent=1))  # newlines inside: chunk ends fall anywhere
    return path


@pytest.mark.parametrize("suffix", [".json", ".jsonl", ".parquet"])
def test_row_batches_equal_the_whole_file_across_chunk_ends(tmp_path, monkeypatch, suffix):
    from ecdctr_pipeline.serving import client

    monkeypatch.setattr(client, "_JSON_CHUNK", 37)  # every row spans chunk ends
    rows = _rows(2500)
    rows[1234]["user_id"] = -2**63  # a number the chunk end may cut
    f = _write(tmp_path / f"rows{suffix}", rows)
    batches = list(client.iter_row_batches(f, batch_rows=1000))
    assert [len(b["user_id"]) for b in batches] == [1000, 1000, 500]
    whole = {k: np.concatenate([b[k] for b in batches]) for k in batches[0]}
    assert whole["user_id"].tolist() == [r["user_id"] for r in rows]
    assert whole["hist_item_ids"].shape == (2500, 3) and whole["item_id"][-1] == 7 * 2499
    columns = tmp_path / "columns.json"  # an object of columns: read whole, batched the same
    columns.write_text(json.dumps({k: [r[k] for r in rows] for k in rows[0]}))
    again = list(client.iter_row_batches(columns, batch_rows=1000))
    assert all(np.array_equal(a[k], b[k]) for a, b in zip(batches, again) for k in a)


@pytest.mark.parametrize("case, text, message", [
    ("bad value deep in", None, "column user_id, row 2500: 1.5 is not an integer within int64"),
    ("other fields deep in", None, "row 2999 has other fields than row 1 (extra)"),
    ("sequence length changes in a later batch", None, "column hist_item_ids: sequences must all have the same"),
    ("cut off", "rows[:-40]", "not JSON"),
    ("garbage after the list", "rows + ' x'", "not JSON (Extra data"),
    ("a non-object deep in", None, "expected a list of row objects"),
])
def test_a_bad_row_deep_in_a_large_file_is_named_in_one_line(tmp_path, monkeypatch, case, text, message):
    from ecdctr_pipeline.serving import client

    monkeypatch.setattr(client, "_JSON_CHUNK", 4096)
    rows = _rows(3000)
    if case == "bad value deep in":
        rows[2499]["user_id"] = 1.5
    elif case == "other fields deep in":
        rows[2998]["extra"] = 1
    elif case == "sequence length changes in a later batch":
        for r in rows[2000:]:
            r["hist_item_ids"] = [1, 2]
    elif case == "a non-object deep in":
        rows[2700] = [1, 2]
    f = _write(tmp_path / "rows.json", rows)
    if text:
        f.write_text(eval(text, {"rows": f.read_text()}))  # noqa: S307 - the cases' own expressions
    with pytest.raises(ServingError) as exc:
        list(client.iter_row_batches(f, batch_rows=1000))
    assert message in str(exc.value) and "\n" not in str(exc.value), str(exc.value)


def test_jsonl_and_parquet_errors_name_the_line_and_row(tmp_path):
    from ecdctr_pipeline.serving.client import iter_row_batches

    f = _write(tmp_path / "rows.jsonl", _rows(10))
    lines = f.read_text().splitlines()
    f.write_text("\n".join(lines[:6] + ["{nope"] + lines[7:]) + "\n")
    with pytest.raises(ServingError, match=r"rows.jsonl: line 7: not JSON"):
        list(iter_row_batches(f, batch_rows=4))
    f.write_text("\n".join(lines[:6] + ["[1]"] + lines[7:]) + "\n")
    with pytest.raises(ServingError, match=r"line 7: expected one row object per line"):
        list(iter_row_batches(f, batch_rows=4))
    import pyarrow.parquet as pq

    p = tmp_path / "rows.parquet"
    users = list(range(3000))
    users[2100] = None  # a null is -1 in Parquet (as before)
    pq.write_table(pa.table({"user_id": users, "item_id": [str(u) for u in range(3000)]}), p)
    with pytest.raises(ServingError, match=r"column item_id, row 1: '0' is not an integer"):
        list(iter_row_batches(p, batch_rows=1000))
    pq.write_table(pa.table({"user_id": users}), p, row_group_size=700)
    b0, b1, b2 = iter_row_batches(p, batch_rows=1000)
    assert b2["user_id"][100] == -1 and b2["user_id"][101] == 2101 and len(b0["user_id"]) <= 1000


@pytest.fixture
def counting_rest_server():
    """A REST predict stand-in: 0.5 for every row; the request numbered in ``fail_at`` gets HTTP 500."""
    state = {"requests": 0, "fail_at": None}

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            state["requests"] += 1
            if state["requests"] == state["fail_at"]:
                self.send_response(500)
                self.end_headers()
                self.wfile.write(b'{"error": "out of memory"}')
                return
            n = len(next(iter(body["inputs"].values())))
            self.send_response(200)
            self.end_headers()
            self.wfile.write(json.dumps({"outputs": [0.5] * n}).encode())

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_port}", state
    httpd.shutdown()


def test_score_writes_nothing_unless_every_row_is_scored(tmp_path, capsys, counting_rest_server):
    """Scores go to a temporary file moved to --output (or copied to stdout) on success only: a
    bad row in the last batch, or a server failing half-way, leaves no output, no file and no
    temporary file; a good run writes them all, a request per batch."""
    from ecdctr_pipeline.cli.verbs import main

    url, state = counting_rest_server
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    rows = _rows(2500)
    good = _write(tmp_path / "good.json", rows)
    rows[2400]["item_id"] = "7"
    bad = _write(tmp_path / "bad.json", rows)
    base = ["score", "--rest", url, "--batch-rows", "500"]
    assert main([*base, "--input", str(bad), "--output", str(out_dir / "scores.txt")]) == 2
    err = capsys.readouterr()
    assert "column item_id, row 2401" in err.err and err.out == ""
    assert state["requests"] == 4 and list(out_dir.iterdir()) == []  # four batches scored, nothing kept
    assert main([*base, "--input", str(bad)]) == 2
    assert capsys.readouterr().out == ""
    state.update(requests=0, fail_at=3)
    assert main([*base, "--input", str(good), "--output", str(out_dir / "scores.txt")]) == 2
    assert "HTTP 500" in capsys.readouterr().err and list(out_dir.iterdir()) == []
    state.update(requests=0, fail_at=None)
    assert main([*base, "--input", str(good), "--output", str(out_dir / "scores.txt")]) == 0
    assert capsys.readouterr().out.strip() == f"scored 2500 rows into {out_dir / 'scores.txt'}"
    assert state["requests"] == 5 and [p.name for p in out_dir.iterdir()] == ["scores.txt"]
    assert (out_dir / "scores.txt").read_text() == "0.500000\n" * 2500
    assert main([*base, "--input", str(good), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"ctr": [0.5] * 2500}
    assert main([*base, "--input", str(good), "--output", str(tmp_path / "nope" / "s.txt")]) == 2
    assert "folder" in capsys.readouterr().err


def _peak_rss_kib(argv: list[str]) -> int:
    """The peak resident set of one ``ecdctr`` run in a fresh process (its own rusage)."""
    import os
    import subprocess
    import sys

    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.Popen([sys.executable, "-m", "ecdctr_pipeline.app.main", *argv], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    assert proc.returncode == 0, err.decode()[-2000:]
    return usage.ru_maxrss  # KiB on Linux


@pytest.mark.slow
def test_score_peak_memory_is_about_flat_in_the_rows(exported, tmp_path):
    """`ecdctr score` of 8N rows takes less than 1.5x the memory of N rows (the whole input in
    memory and scored in one call took ~2x at these sizes, and 7.1 GB at 100k rows with the
    default model): the input is read, scored and written a batch at a time."""
    path, rows, _ = exported
    n = 10_000
    peaks = {}
    for rows_n in (n, 8 * n):
        idx = np.arange(rows_n) % len(rows["user_id"])
        table = {k: v[idx].tolist() for k, v in rows.items()}
        f = tmp_path / f"rows-{rows_n}.json"
        with f.open("w") as out:
            out.write("[")
            for i in range(rows_n):
                out.write(("," if i else "") + json.dumps({k: table[k][i] for k in table}))
            out.write("]")
        del table
        peaks[rows_n] = _peak_rss_kib(["score", "--model", str(path), "--input", str(f),
                                       "--output", str(tmp_path / f"scores-{rows_n}.txt")])
        assert len((tmp_path / f"scores-{rows_n}.txt").read_text().splitlines()) == rows_n
    assert peaks[8 * n] < 1.5 * peaks[n], peaks
