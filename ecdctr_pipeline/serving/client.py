"""Scoring clients: TF Serving over gRPC (``PredictionService``) and REST, or a local SavedModel.

All three take the same rows (a dict of equal-length columns in the serving signature's
names, see :func:`ecdctr_pipeline.serving.export.serving_input_spec`) and return click
probabilities. gRPC retries ``UNAVAILABLE`` with exponential backoff; a missing model or
version, and inputs that do not fit the signature, are one-line :class:`ServingError`\\ s.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from ecdctr_pipeline.core.errors import EcdctrError

OUTPUT_KEY = "ctr"
SIGNATURE = "serving_default"


class ServingError(EcdctrError):
    """Scoring failed: server unavailable, model/version missing, or a signature mismatch."""


def read_rows(path: str | Path) -> dict[str, np.ndarray]:
    """Rows from ``.json`` (a list of row objects with the same fields, or one object of columns)
    or ``.parquet``; every value an integer (sequences: lists of integers) within int64."""
    p = Path(path)
    if not p.is_file():
        raise ServingError(f"input file not found: {p}")
    if p.suffix.lower() == ".parquet":
        import pyarrow.parquet as pq

        try:
            t = pq.read_table(p)
        except Exception as exc:  # noqa: BLE001 - pyarrow raises several kinds for a bad file
            raise ServingError(f"{p}: not a readable Parquet file ({' '.join(str(exc).split())[:200]})") from None
        return {name: _ints(p, name, t[name].to_pylist(), nulls=-1) for name in t.column_names}
    if p.suffix.lower() == ".json":
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise ServingError(f"{p}: not JSON ({' '.join(str(exc).split())[:120]})") from None
        if isinstance(data, list):
            if not data:
                raise ServingError(f"{p}: no rows")
            if not all(isinstance(row, dict) for row in data):
                raise ServingError(f"{p}: expected a list of row objects or an object of columns")
            fields = list(data[0])
            for i, row in enumerate(data[1:], start=2):
                if set(row) != set(fields):
                    diff = sorted(set(row) ^ set(fields))
                    raise ServingError(f"{p}: row {i} has other fields than row 1 ({', '.join(diff)})")
            data = {k: [row[k] for row in data] for k in fields}
        if not isinstance(data, dict) or not data:
            raise ServingError(f"{p}: expected a list of row objects or an object of columns")
        out = {}
        for k, v in data.items():
            if not isinstance(v, list):
                raise ServingError(f"{p}: column {k} must be a list of values")
            out[k] = _ints(p, k, v)
        return out
    raise ServingError(f"unsupported input {p}: use .json or .parquet")


def _ints(p: Path, name: str, values: list, *, nulls: int | None = None) -> np.ndarray:
    """``values`` (integers, or lists of integers) as int64; anything else is an error naming the
    column: floats are not truncated, text is not parsed, a value beyond int64 is not wrapped."""
    def bad(v, nested: bool = False) -> bool:
        if v is None:
            return nulls is None or nested
        if isinstance(v, list):  # a sequence's value: a list of integers, never a list of lists
            return nested or any(bad(x, True) for x in v)
        return isinstance(v, bool) or not isinstance(v, int) or not -2**63 <= v < 2**63

    for i, v in enumerate(values):
        if bad(v):
            shown = repr(v) if len(repr(v)) <= 40 else repr(v)[:40] + "…"
            raise ServingError(f"{p}: column {name}, row {i + 1}: {shown} is not an integer within int64")
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
