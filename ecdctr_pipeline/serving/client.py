"""Scoring clients: TF Serving over gRPC (``PredictionService``) and REST, or a local SavedModel.

All three take the same rows (a dict of equal-length columns in the serving signature's
names, see :func:`ecdctr_pipeline.serving.export.serving_input_spec`) and return click
probabilities. gRPC retries ``UNAVAILABLE`` with exponential backoff; a missing model or
version, and inputs that do not fit the signature, are one-line :class:`ServingError`\\ s.
Files of rows are read in batches (:func:`iter_row_batches`) and scored a batch per request
(:func:`score_batches`), so scoring a file takes about the same memory whatever its size.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from ecdctr_pipeline.core.errors import EcdctrError

OUTPUT_KEY = "ctr"
SIGNATURE = "serving_default"


class ServingError(EcdctrError):
    """Scoring failed: server unavailable, model/version missing, or a signature mismatch."""


# rows per request / SavedModel call when scoring a file: peak memory is about flat in the rows
BATCH_ROWS = 4096
_JSON_CHUNK = 1 << 20  # characters read at a time from a JSON array
_WS = json.decoder.WHITESPACE


def read_rows(path: str | Path) -> dict[str, np.ndarray]:
    """All rows of ``path`` as one dict of columns (:func:`iter_row_batches`, concatenated)."""
    batches = list(iter_row_batches(path))
    return {k: np.concatenate([b[k] for b in batches]) for k in batches[0]}


def iter_row_batches(path: str | Path, batch_rows: int = BATCH_ROWS) -> Iterator[dict[str, np.ndarray]]:
    """The rows of ``path`` in batches of at most ``batch_rows``, each a dict of equal-length
    int64 columns.

    ``.json``: a list of row objects with the same fields (read incrementally), or one object of
    columns (read whole); ``.jsonl``/``.ndjson``: one row object per line; ``.parquet`` (read by
    record batches, nulls as -1). Every value an integer (sequences: lists of integers, all of
    one length) within int64; anything else is a one-line :class:`ServingError` naming the file,
    the column and the row, raised when the batch holding it is read. A missing, unreadable,
    unsupported or empty file fails here, before any batch is returned."""
    if batch_rows < 1:
        raise ServingError(f"batch rows must be at least 1, got {batch_rows}")
    p = Path(path)
    if not p.is_file():
        raise ServingError(f"input file not found: {p}")
    suffix = p.suffix.lower()
    if suffix == ".parquet":
        batches = _parquet_batches(p, batch_rows)
    elif suffix == ".json":
        batches = _json_batches(p, batch_rows)
    elif suffix in (".jsonl", ".ndjson"):
        batches = _batched(p, _jsonl_rows(p), batch_rows)
    else:
        raise ServingError(f"unsupported input {p}: use .json, .jsonl or .parquet")
    return _same_shapes(p, batches)


def _same_shapes(p: Path, batches: Iterator[dict[str, np.ndarray]]) -> Iterator[dict[str, np.ndarray]]:
    """``batches``, each column keeping its sequence length from batch to batch. The first batch
    is read at once, so the file's own errors (not JSON, not Parquet, no rows) are raised here."""
    first = next(batches, None)
    if first is None:
        raise ServingError(f"{p}: no rows")

    def checked():
        shapes = {k: v.shape[1:] for k, v in first.items()}
        yield first
        for b in batches:
            for k, v in b.items():
                if v.shape[1:] != shapes[k]:
                    raise ServingError(f"{p}: column {k}: sequences must all have the same length")
            yield b
    return checked()


def _batched(p: Path, rows: Iterator[dict], batch_rows: int) -> Iterator[dict[str, np.ndarray]]:
    """Row objects as batches of columns; every row must have row 1's fields."""
    fields: list[str] = []
    keys: set[str] = set()
    batch: list[dict] = []
    done = 0
    for i, row in enumerate(rows, start=1):
        if i == 1:
            fields, keys = list(row), set(row)
        elif row.keys() != keys:
            diff = sorted(set(row) ^ keys)
            raise ServingError(f"{p}: row {i} has other fields than row 1 ({', '.join(diff)})")
        batch.append(row)
        if len(batch) == batch_rows:
            yield {k: _ints(p, k, [r[k] for r in batch], start=done) for k in fields}
            done += len(batch)
            batch = []
    if batch:
        yield {k: _ints(p, k, [r[k] for r in batch], start=done) for k in fields}


def _parquet_batches(p: Path, batch_rows: int) -> Iterator[dict[str, np.ndarray]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    def unreadable(exc: Exception) -> ServingError:
        return ServingError(f"{p}: not a readable Parquet file ({' '.join(str(exc).split())[:200]})")

    try:
        batches = pq.ParquetFile(p).iter_batches(batch_size=batch_rows, use_threads=False)
    except Exception as exc:  # noqa: BLE001 - pyarrow raises several kinds for a bad file
        raise unreadable(exc) from None
    done = 0
    while True:
        try:
            rb = next(batches, None)
        except Exception as exc:  # noqa: BLE001 - a damaged row group
            raise unreadable(exc) from None
        if rb is None:
            return
        out = {}
        for name, col in zip(rb.schema.names, rb.columns):
            if pa.types.is_integer(col.type) and col.type != pa.uint64():  # every value fits int64
                out[name] = col.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
            else:
                out[name] = _ints(p, name, col.to_pylist(), nulls=-1, start=done)
        done += rb.num_rows
        if rb.num_rows:
            yield out


def _json_batches(p: Path, batch_rows: int) -> Iterator[dict[str, np.ndarray]]:
    """A list of row objects is read incrementally; anything else (an object of columns) whole."""
    f = open(p, encoding="utf-8")  # noqa: SIM115 - closed below or by rows()
    try:
        reader = _JsonArray(p, f)
        first = reader.peek()
    except BaseException:
        f.close()
        raise
    if first != "[":
        f.close()
        return _json_columns(p, batch_rows)

    def rows():
        with f:
            yield from reader.rows()
    return _batched(p, rows(), batch_rows)


def _json_columns(p: Path, batch_rows: int) -> Iterator[dict[str, np.ndarray]]:
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ServingError(f"{p}: not JSON ({' '.join(str(exc).split())[:120]})") from None
    if not isinstance(data, dict) or not data:
        raise ServingError(f"{p}: expected a list of row objects or an object of columns")
    columns = {}
    for k, v in data.items():
        if not isinstance(v, list):
            raise ServingError(f"{p}: column {k} must be a list of values")
        columns[k] = _ints(p, k, v)
    lengths = sorted({len(v) for v in columns.values()})
    if len(lengths) > 1:
        raise ServingError(f"{p}: columns have different lengths {lengths}")
    rows = lengths[0]
    return ({k: v[i:i + batch_rows] for k, v in columns.items()} for i in range(0, rows, batch_rows))


def _jsonl_rows(p: Path) -> Iterator[dict]:
    with open(p, encoding="utf-8") as f:
        lineno = 0
        while True:
            try:
                line = f.readline()
            except UnicodeDecodeError as exc:
                raise ServingError(f"{p}: line {lineno + 1}: not JSON (not UTF-8: {exc.reason})") from None
            if not line:
                return
            lineno += 1
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError as exc:
                raise ServingError(f"{p}: line {lineno}: not JSON ({' '.join(str(exc).split())[:120]})") from None
            if not isinstance(row, dict):
                raise ServingError(f"{p}: line {lineno}: expected one row object per line")
            yield row


class _JsonArray:
    """The elements of a top-level JSON array, read from a text file a chunk at a time (memory:
    about one chunk and one element, whatever the file's size); each must be a row object."""

    def __init__(self, p: Path, f):
        self.p, self.f = p, f
        self.buf, self.pos, self.eof = "", 0, False
        self.dropped, self.lines = 0, 0  # characters and newlines before buf
        self.decoder = json.JSONDecoder()

    def _more(self) -> bool:
        """Append the next chunk to ``buf[pos:]``; False at the end of the file."""
        if self.eof:
            return False
        try:
            chunk = self.f.read(max(_JSON_CHUNK, len(self.buf) - self.pos))
        except UnicodeDecodeError as exc:
            raise ServingError(f"{self.p}: not JSON (not UTF-8: {exc.reason})") from None
        self.dropped += self.pos
        self.lines += self.buf.count("\n", 0, self.pos)
        self.buf, self.pos = self.buf[self.pos:] + chunk, 0
        self.eof = not chunk
        return not self.eof

    def _error(self, msg: str, at: int) -> ServingError:
        line = self.lines + self.buf.count("\n", 0, at) + 1
        column = at - self.buf.rfind("\n", 0, at)
        return ServingError(f"{self.p}: not JSON ({msg}: line {line} column {column} (char {self.dropped + at}))")

    def peek(self) -> str:
        """The next character that is not whitespace ('' at the end of the file)."""
        while True:
            self.pos = _WS.match(self.buf, self.pos).end()
            if self.pos < len(self.buf):
                return self.buf[self.pos]
            if not self._more():
                return ""

    def _value(self):
        while True:
            try:
                value, end = self.decoder.raw_decode(self.buf, self.pos)
            except json.JSONDecodeError as exc:
                # cut by the chunk's end (an open string, a split literal or number): read on
                if (exc.pos >= len(self.buf) - 16 or exc.msg.startswith("Unterminated")) and self._more():
                    continue
                raise self._error(exc.msg, exc.pos) from None
            if end == len(self.buf) and self._more():  # a number may go on in the next chunk
                continue
            self.pos = end
            return value

    def rows(self) -> Iterator[dict]:
        if self.peek() != "[":
            raise self._error("Expecting '['", self.pos)
        self.pos += 1
        if self.peek() == "]":
            self.pos += 1
            self._end()
            return
        while True:
            if self.peek() == "":
                raise self._error("Expecting value", self.pos)
            row = self._value()
            if not isinstance(row, dict):
                raise ServingError(f"{self.p}: expected a list of row objects or an object of columns")
            yield row
            c = self.peek()
            if c == ",":
                self.pos += 1
            elif c == "]":
                self.pos += 1
                self._end()
                return
            else:
                raise self._error("Expecting ',' delimiter", self.pos)

    def _end(self) -> None:
        if self.peek() != "":
            raise self._error("Extra data", self.pos)


def _ints(p: Path, name: str, values: list, *, nulls: int | None = None, start: int = 0) -> np.ndarray:
    """``values`` (integers, or lists of integers) as int64; anything else is an error naming the
    column and the row (``start`` rows come before ``values``): floats are not truncated, text is
    not parsed, a value beyond int64 is not wrapped."""
    def bad(v, nested: bool = False) -> bool:
        if v is None:
            return nulls is None or nested
        if isinstance(v, list):  # a sequence's value: a list of integers, never a list of lists
            return nested or any(bad(x, True) for x in v)
        return isinstance(v, bool) or not isinstance(v, int) or not -2**63 <= v < 2**63

    for i, v in enumerate(values):
        if bad(v):
            shown = repr(v) if len(repr(v)) <= 40 else repr(v)[:40] + "…"
            raise ServingError(f"{p}: column {name}, row {start + i + 1}: {shown} is not an integer within int64")
    filled = [nulls if v is None else v for v in values]
    try:
        return np.asarray(filled, dtype=np.int64)
    except ValueError:  # ragged sequences
        raise ServingError(f"{p}: column {name}: sequences must all have the same length") from None


def check_rows(rows: dict[str, np.ndarray], spec: dict[str, tuple[str, tuple]]) -> None:
    """Names and shapes of ``rows`` against a signature spec; raises naming the first problem."""
    missing = [n for n in spec if n not in rows]
    extra = [n for n in rows if n not in spec]
    if missing:
        raise ServingError(f"signature mismatch: missing input(s) {', '.join(missing)}")
    if extra:
        raise ServingError(f"signature mismatch: unexpected input(s) {', '.join(extra)}")
    n = {len(v) for v in rows.values()}
    if len(n) != 1:
        raise ServingError(f"signature mismatch: inputs have different row counts {sorted(n)}")
    for name, (_dtype, shape) in spec.items():
        if len(shape) == 2 and (rows[name].ndim != 2 or rows[name].shape[1] != shape[1]):
            raise ServingError(f"signature mismatch: {name} must have shape [rows, {shape[1]}], "
                               f"got {list(rows[name].shape)}")


def score_batches(scorer, batches: Iterable[dict[str, np.ndarray]]) -> Iterator[np.ndarray]:
    """The scores of each batch of rows (any scorer's ``predict``), one request or SavedModel
    call per batch; a reply with another number of scores than rows is an error."""
    for batch in batches:
        n = len(next(iter(batch.values())))
        out = np.asarray(scorer.predict(batch)).reshape(-1)
        if len(out) != n:
            raise ServingError(f"the model returned {len(out)} scores for a batch of {n} rows")
        yield out


def verify_local_artifact(folder: Path) -> None:
    """A published serving version on disk carries its ``MANIFEST.json``: every file it lists must
    match its size and SHA-256 (:func:`~ecdctr_pipeline.data.artifacts.verify`; a flipped byte is
    an error naming the file)."""
    from ecdctr_pipeline.data import artifacts
    from ecdctr_pipeline.data.store import LocalStore

    if (folder / "MANIFEST.json").is_file():
        artifacts.verify(LocalStore(f"file://{folder.resolve()}"), "")


class LocalScorer:
    """Scores with a SavedModel on disk (no server)."""

    def __init__(self, path: str | Path):
        import tensorflow as tf

        p = Path(path)
        if not (p / "saved_model.pb").is_file():
            raise ServingError(f"no SavedModel at {p} (saved_model.pb missing)")
        verify_local_artifact(p)
        try:
            self.model = tf.saved_model.load(str(p))
        except Exception as exc:  # noqa: BLE001 - TensorFlow raises many kinds for a damaged model
            raise ServingError(f"cannot load the SavedModel at {p}: {' '.join(str(exc).split())[:200]}") from None
        if SIGNATURE not in self.model.signatures:
            raise ServingError(f"{p} has no {SIGNATURE} signature")
        self.fn = self.model.signatures[SIGNATURE]
        self.spec = {k: (v.dtype.name, tuple(v.shape)) for k, v in self.fn.structured_input_signature[1].items()}

    def predict(self, rows: dict[str, np.ndarray]) -> np.ndarray:
        import tensorflow as tf

        check_rows(rows, self.spec)
        out = self.fn(**{k: tf.constant(np.asarray(v, np.int64)) for k, v in rows.items()})
        return out[OUTPUT_KEY].numpy().reshape(-1)


class GrpcScorer:
    """TF Serving ``PredictionService/Predict`` over gRPC."""

    def __init__(self, target: str, model_name: str = "actr", *, version: int | None = None,
                 timeout_s: float = 5.0, retries: int = 3, backoff_s: float = 0.2):
        import grpc
        from tensorflow_serving.apis import prediction_service_pb2_grpc

        self.target, self.model_name, self.version = target, model_name, version
        self.timeout_s, self.retries, self.backoff_s = timeout_s, retries, backoff_s
        self.channel = grpc.insecure_channel(target, options=[("grpc.max_receive_message_length", 64 << 20)])
        self.stub = prediction_service_pb2_grpc.PredictionServiceStub(self.channel)

    def request(self, rows: dict[str, np.ndarray]):
        import tensorflow as tf
        from tensorflow_serving.apis import model_pb2, predict_pb2

        spec = model_pb2.ModelSpec(name=self.model_name, signature_name=SIGNATURE)
        if self.version is not None:
            spec.version.value = int(self.version)
        req = predict_pb2.PredictRequest(model_spec=spec)
        for k, v in rows.items():
            req.inputs[k].CopyFrom(tf.make_tensor_proto(np.asarray(v, np.int64)))
        req.output_filter.append(OUTPUT_KEY)
        return req

    def predict(self, rows: dict[str, np.ndarray]) -> np.ndarray:
        import grpc
        import tensorflow as tf

        req = self.request(rows)
        what = f"model {self.model_name}" + (f" version {self.version}" if self.version is not None else "")
        for attempt in range(self.retries + 1):
            try:
                resp = self.stub.Predict(req, timeout=self.timeout_s)
                return tf.make_ndarray(resp.outputs[OUTPUT_KEY]).reshape(-1)
            except grpc.RpcError as exc:
                code = exc.code()
                if code == grpc.StatusCode.UNAVAILABLE and attempt < self.retries:
                    time.sleep(self.backoff_s * 2 ** attempt)
                    continue
                detail = " ".join((exc.details() or "").split())[:300]
                if code == grpc.StatusCode.NOT_FOUND:
                    raise ServingError(f"{what} not found at {self.target}: {detail}") from None
                if code == grpc.StatusCode.INVALID_ARGUMENT:
                    raise ServingError(f"signature mismatch for {what} at {self.target}: {detail}") from None
                if code == grpc.StatusCode.DEADLINE_EXCEEDED:
                    raise ServingError(f"{what} at {self.target} timed out after {self.timeout_s} s") from None
                if code == grpc.StatusCode.UNAVAILABLE:
                    raise ServingError(f"TF Serving at {self.target} unavailable after {self.retries + 1} "
                                       f"attempt(s): {detail}") from None
                raise ServingError(f"{what} at {self.target} failed ({code.name}): {detail}") from None
        raise ServingError(f"unreachable: {self.target}")  # pragma: no cover

    def close(self) -> None:
        self.channel.close()


class RestScorer:
    """TF Serving REST predict API (``POST /v1/models/<name>[/versions/<v>]:predict``)."""

    def __init__(self, url: str, model_name: str = "actr", *, version: int | None = None, timeout_s: float = 5.0,
                 retries: int = 3, backoff_s: float = 0.2):
        from urllib.parse import urlparse

        parsed = urlparse(url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ServingError(f"--rest {url!r}: expected an http(s) URL such as http://127.0.0.1:8501")
        self.url, self.model_name, self.version = url.rstrip("/"), model_name, version
        self.timeout_s, self.retries, self.backoff_s = timeout_s, retries, backoff_s

    def predict(self, rows: dict[str, np.ndarray]) -> np.ndarray:
        import urllib.error
        import urllib.request

        path = f"/v1/models/{self.model_name}" + (f"/versions/{self.version}" if self.version is not None else "")
        body = json.dumps({"signature_name": SIGNATURE,
                           "inputs": {k: np.asarray(v).tolist() for k, v in rows.items()}}).encode()
        req = urllib.request.Request(self.url + path + ":predict", data=body,
                                     headers={"Content-Type": "application/json"})
        for attempt in range(self.retries + 1):
            try:
                with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                    out = json.loads(resp.read())["outputs"]
                    out = out[OUTPUT_KEY] if isinstance(out, dict) else out
                    return np.asarray(out, dtype=np.float32).reshape(-1)
            except urllib.error.HTTPError as exc:
                detail = exc.read().decode(errors="replace")[:300]
                if exc.code == 404:
                    raise ServingError(f"model {self.model_name} not found at {self.url}: {detail}") from None
                if exc.code == 400:
                    raise ServingError(f"signature mismatch at {self.url}: {detail}") from None
                if exc.code in (502, 503) and attempt < self.retries:
                    time.sleep(self.backoff_s * 2 ** attempt)
                    continue
                raise ServingError(f"REST predict at {self.url} failed with HTTP {exc.code}: {detail}") from None
            except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
                if attempt < self.retries:
                    time.sleep(self.backoff_s * 2 ** attempt)
                    continue
                raise ServingError(f"TF Serving REST at {self.url} unavailable: {exc}") from None
        raise ServingError(f"unreachable: {self.url}")  # pragma: no cover
