"""Serving: merged historical tables, the TF Serving SavedModel, warm-up requests, model config.

The serving signature ``serving_default`` takes the raw feature columns (one row per
candidate impression; see :func:`serving_input_spec`):

============================  =========  ==============================================
input                         dtype      meaning
============================  =========  ==============================================
user_id, item_id, category_id int64 [B]  raw ids (unknown ids are fine)
profile and context columns   int64 [B]  the raw-log categories; -1 = missing
user/item_{imp,clk}_{7,28}d   int64 [B]  trailing counters (raw counts; log1p in-graph)
hist_item_ids, hist_category_ids int64 [B, N]  last N clicked items/categories, oldest first,
                                         0-padded on the right
hist_len                      int64 [B]  number of real steps in the sequences
============================  =========  ==============================================

Output ``ctr`` (float32 [B]). The historical self-attention of the A-CTR model is folded
into one merged table per side (paper §3.6.2), so the served graph does one lookup per side.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import shutil
import time
from pathlib import Path

import numpy as np

from . import artifacts, calendar, paths
from .errors import EcdctrError
from .inputs import CATEGORICAL, FeatureLayout
from .schema import RAW_COLUMNS, SEQ_CATS, SEQ_ITEMS, SEQ_LEN, counter_names
from .settings import Settings
from .store import ArtifactStore, open_store, scratch_dir

log = logging.getLogger(__name__)

SIGNATURE = "serving_default"
OUTPUT_KEY = "ctr"
WARMUP = "assets.extra/tf_serving_warmup_requests"
SERVED_POINTER = "serving/served.json"
MODEL_CONFIG = "serving/models.config"
_VOCAB = {c.name: c.vocab_size for c in RAW_COLUMNS}


class ExportRefused(EcdctrError):
    """The A-CTR model of the day may not be served (rejected by its gate)."""


def serving_input_spec(settings: Settings) -> dict[str, tuple[str, tuple]]:
    """name → (dtype, shape) of the ``serving_default`` inputs."""
    f = settings.features
    spec = {n: ("int64", (None,)) for n in ("user_id", "item_id", "category_id") + CATEGORICAL}
    for n in counter_names(f.counter_windows_days):
        spec[n] = ("int64", (None,))
    spec[SEQ_ITEMS] = ("int64", (None, f.max_seq_len))
    spec[SEQ_CATS] = ("int64", (None, f.max_seq_len))
    spec[SEQ_LEN] = ("int64", (None,))
    return spec


def raw_rows(table, settings: Settings) -> dict[str, np.ndarray]:
    """Serving inputs from a feature table (what a client would send)."""
    import pyarrow.compute as pc

    from .inputs import pad_sequences

    out = {}
    for name, (_dtype, shape) in serving_input_spec(settings).items():
        if name in (SEQ_ITEMS, SEQ_CATS):
            out[name] = pad_sequences(table[name], settings.features.max_seq_len)
        elif name in CATEGORICAL:
            out[name] = np.asarray(pc.fill_null(table[name], -1)).astype(np.int64)
        else:
            out[name] = np.asarray(table[name]).astype(np.int64)
    return out


def to_model_inputs(raw: dict, settings: Settings) -> dict:
    """The in-graph transform raw serving inputs → Keras model inputs (TF ops)."""
    import tensorflow as tf

    f = settings.features
    out = {}
    for n in ("user_id", "item_id", "category_id"):
        out[n] = tf.reshape(raw[n], (-1, 1))
    for n in CATEGORICAL:
        x = tf.reshape(raw[n], (-1, 1))
        vs = _VOCAB.get(n)
        if vs is not None:  # missing or out of vocabulary -> the extra "missing" bucket
            x = tf.where((x < 0) | (x >= vs), tf.constant(vs, tf.int64), x)
        out[n] = x
    for n in counter_names(f.counter_windows_days):
        out[n] = tf.reshape(tf.math.log1p(tf.cast(raw[n], tf.float32)), (-1, 1))
    out[SEQ_ITEMS] = raw[SEQ_ITEMS]
    out[SEQ_CATS] = raw[SEQ_CATS]
    out[SEQ_LEN] = tf.reshape(tf.minimum(raw[SEQ_LEN], f.max_seq_len), (-1, 1))
    return out


def build_serving_model(actr_model, settings: Settings, batch_size: int = 65536):
    """The A-CTR network with its historical blocks folded into merged tables."""
    from .models import MergedTables, build_complete_model

    u_ids, u_merged = actr_model.get_layer("hist_user").merged_table(batch_size)
    i_ids, i_merged = actr_model.get_layer("hist_item").merged_table(batch_size)
    merged = MergedTables(u_ids, u_merged, i_ids, i_merged)
    served = build_complete_model(settings.cpm, settings.features, None, name="actr_serving", merged=merged)
    src = {v.path: v for v in actr_model.weights}
    for v in served.weights:
        if v.path.startswith(("hist_user/", "hist_item/")):
            continue
        v.assign(src[v.path].value)
    return served


def export_saved_model(model, settings: Settings, path: Path) -> Path:
    """Write ``model`` as a TF Serving SavedModel with a raw-column ``serving_default``."""
    import tensorflow as tf

    spec = serving_input_spec(settings)
    signature = [{n: tf.TensorSpec(shape, getattr(tf, dtype), name=n) for n, (dtype, shape) in spec.items()}]

    class ServingModule(tf.Module):
        def __init__(self, keras_model):
            super().__init__()
            self.model = keras_model

        @tf.function(input_signature=signature)
        def serve(self, inputs):
            p = self.model(to_model_inputs(inputs, settings), training=False)
            return {OUTPUT_KEY: tf.reshape(p, (-1,))}

    module = ServingModule(model)
    tf.saved_model.save(module, str(path), signatures={SIGNATURE: module.serve})
    return path


def write_warmup(path: Path, rows: dict[str, np.ndarray], model_name: str, n: int = 5) -> Path:
    """TF Serving warm-up file: ``n`` single-row PredictionLog records."""
    import tensorflow as tf
    from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

    out = path / WARMUP
    out.parent.mkdir(parents=True, exist_ok=True)
    total = len(next(iter(rows.values())))
    with tf.io.TFRecordWriter(str(out)) as w:
        for i in range(min(n, total)):
            req = predict_pb2.PredictRequest(model_spec=model_pb2.ModelSpec(name=model_name, signature_name=SIGNATURE))
            for k, v in rows.items():
                req.inputs[k].CopyFrom(tf.make_tensor_proto(v[i:i + 1]))
            log_rec = prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=req))
            w.write(log_rec.SerializeToString())
    return out


def _dir_size(path: Path) -> int:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


# ------------------------------------------------------------------ served version & model config
def read_served(store: ArtifactStore) -> dict:
    try:
        return json.loads(store.get_bytes(SERVED_POINTER))
    except FileNotFoundError:
        return {"version": None, "history": []}


def model_config_text(settings: Settings, store: ArtifactStore, version: int) -> str:
    base = store.uri(paths.SERVING_ACTR)
    if base.startswith("file://"):
        base = base[len("file://"):]
    return ("model_config_list {\n  config {\n"
            f"    name: \"{settings.serving.model_name}\"\n"
            f"    base_path: \"{base}\"\n"
            "    model_platform: \"tensorflow\"\n"
            f"    model_version_policy {{ specific {{ versions: {version} }} }}\n"
            f"    version_labels {{ key: \"stable\" value: {version} }}\n"
            "  }\n}\n")


def set_served(settings: Settings, store: ArtifactStore, version: int, *, reason: str) -> dict:
    """Point serving at ``version``: the pointer file and TF Serving's ``models.config``."""
    if artifacts.find_manifest(store, paths.serving_version(version)) is None:
        raise EcdctrError(f"serving version {version} is not published at {store.uri(paths.serving_version(version))}")
    state = read_served(store)
    history = [h for h in state.get("history", [])]
    history.append({"version": version, "reason": reason,
                    "at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")})
    state = {"version": version, "history": history[-50:]}
    store.put_bytes(MODEL_CONFIG, model_config_text(settings, store, version).encode())
    store.put_bytes(SERVED_POINTER, json.dumps(state, indent=2).encode())
    return state


def rollback(settings: Settings) -> dict:
    """Serve the newest published version older than the served one."""
    store = open_store(settings.store)
    state = read_served(store)
    current = state.get("version")
    if current is None:
        raise EcdctrError("nothing is served yet: no version to roll back from")
    older = sorted(int(m.artifact_id) for _, m in artifacts.list_artifacts(store, "serving_version")
                   if int(m.artifact_id) < current)
    if not older:
        raise EcdctrError(f"no published serving version older than {current} to roll back to")
    return set_served(settings, store, older[-1], reason=f"rollback from {current}")


def prune_versions(settings: Settings, store: ArtifactStore) -> list[int]:
    """Keep the served version and the ``serving.keep_versions - 1`` newest others; delete the rest."""
    served = read_served(store).get("version")
    versions = sorted((int(m.artifact_id) for _, m in artifacts.list_artifacts(store, "serving_version")), reverse=True)
    keep = set(versions[: settings.serving.keep_versions]) | ({served} if served else set())
    removed = [v for v in versions if v not in keep]
    for v in removed:
        store.delete(paths.manifest_key(paths.serving_version(v)))  # invisible first, then the files
        store.delete_prefix(paths.serving_version(v))
    return removed


# ------------------------------------------------------------------ export
def export_version(settings: Settings, day: str | dt.date, *, force: bool = False) -> dict:
    """Export the blessed A-CTR model of ``day`` as the next serving version and serve it."""
    from . import training
    from .inputs import to_arrays

    t0 = time.perf_counter()
    day = calendar.parse_date(day, what="--as-of")
    store = open_store(settings.store)
    a_prefix = paths.actr_model(day)
    a_manifest = artifacts.read_manifest(store, a_prefix)
    gate = a_manifest.extra.get("gate", {})
    if not a_manifest.extra.get("blessed"):
        base = gate.get("baseline") or {}
        raise ExportRefused(
            f"A-CTR model {day} was rejected by its gate: GAUC {gate.get('candidate_gauc')} vs served model "
            f"{base.get('model')} GAUC {base.get('gauc')} (tolerance {gate.get('tolerance')}); not exported")
    existing = [m for _, m in artifacts.list_artifacts(store, "serving_version") if m.inputs.actr_model == day.isoformat()]
    if existing and not force:
        m = max(existing, key=lambda x: int(x.artifact_id))
        return {"version": int(m.artifact_id), "skipped": True, "actr_model": day.isoformat(),
                "served": read_served(store).get("version")}
    actr = training.load_model(store, a_prefix, a_manifest)
    served_model = build_serving_model(actr, settings)
    # check equivalence on the day's holdout before publishing
    plan = calendar.actr_plan(day, settings.calendar)
    f = settings.features
    layout = FeatureLayout("complete", f.max_seq_len, tuple(f.counter_windows_days))
    table, _ = training.read_features(store, paths.complete_features("ad"), plan.holdout_window, layout,
                                      who=f"export {day}")
    rows = raw_rows(table, settings)
    versions = [int(m.artifact_id) for _, m in artifacts.list_artifacts(store, "serving_version")]
    version = max(versions, default=0) + 1
    scratch = scratch_dir(settings.store, "ecdctr-export-")
    try:
        out = scratch / str(version)
        export_saved_model(served_model, settings, out)
        write_warmup(out, rows, settings.serving.model_name)
        from .serving_client import LocalScorer

        want = training.predict(actr, to_arrays(table, layout))
        got = LocalScorer(out).predict(rows)
        max_diff = float(np.max(np.abs(got - want)))
        if max_diff > 1e-5:
            raise EcdctrError(f"export {day}: serving model differs from A-CTR by {max_diff:.2e} (> 1e-5); not published")
        files = {p.relative_to(out).as_posix(): p for p in sorted(out.rglob("*")) if p.is_file()}
        manifest = artifacts.Manifest(
            kind="serving_version", artifact_id=str(version), logical_date=day.isoformat(),
            data_window=a_manifest.data_window, months=a_manifest.months,
            inputs=artifacts.Inputs(actr_model=day.isoformat(), cpm_checkpoint=a_manifest.inputs.cpm_checkpoint,
                                    embedding_set=a_manifest.inputs.embedding_set,
                                    embedding_months=a_manifest.inputs.embedding_months,
                                    delta_tables=a_manifest.inputs.delta_tables),
            metrics=a_manifest.metrics,
            extra={"signature": {k: [d, list(s)] for k, (d, s) in serving_input_spec(settings).items()},
                   "output": OUTPUT_KEY, "model_bytes": _dir_size(out), "equivalence_max_abs_diff": max_diff,
                   "merged_rows": {"user": int(served_model.get_layer("hist_user").vocab_size) + 1,
                                   "item": int(served_model.get_layer("hist_item").vocab_size) + 1}},
        )
        artifacts.publish(store, paths.serving_version(version), files, manifest, flat=True,
                          last=("saved_model.pb",))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    state = set_served(settings, store, version, reason=f"export of A-CTR {day}")
    removed = prune_versions(settings, store)
    return {"version": version, "skipped": False, "actr_model": day.isoformat(), "served": state["version"],
            "equivalence_max_abs_diff": max_diff, "pruned": removed, "seconds": round(time.perf_counter() - t0, 2)}
