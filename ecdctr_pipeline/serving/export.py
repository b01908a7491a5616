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
import logging
import shutil
import time
from pathlib import Path

import numpy as np

from ecdctr_pipeline.core import calendar, paths
from ecdctr_pipeline.core.errors import EcdctrError
from ecdctr_pipeline.core.settings import Settings
from ecdctr_pipeline.data import artifacts, lineage
from ecdctr_pipeline.data.store import ArtifactStore
from ecdctr_pipeline.modeling.preprocessing import FeatureLayout, raw_columns, transform
from ecdctr_pipeline.serving.pointer import prune_versions, read_served, set_served

log = logging.getLogger(__name__)

SIGNATURE = "serving_default"
OUTPUT_KEY = "ctr"
WARMUP = "assets.extra/tf_serving_warmup_requests"


class ExportRefused(EcdctrError):
    """The A-CTR model of the day may not be served (rejected by its gate)."""


def serving_input_spec(settings: Settings) -> dict[str, tuple[str, tuple]]:
    """name → (dtype, shape) of the ``serving_default`` inputs (the raw feature columns)."""
    return FeatureLayout.complete(settings.features).input_spec()


def raw_rows(table, settings: Settings) -> dict[str, np.ndarray]:
    """Serving inputs from a feature table (what a client would send)."""
    return raw_columns(table, FeatureLayout.complete(settings.features), label=False)


def build_serving_model(actr_model, settings: Settings, batch_size: int = 65536):
    """The A-CTR network with its historical blocks folded into merged tables."""
    from ecdctr_pipeline.modeling.models import MergedTables, build_complete_model

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

    layout = FeatureLayout.complete(settings.features)
    spec = layout.input_spec()
    signature = [{n: tf.TensorSpec(shape, getattr(tf, dtype), name=n) for n, (dtype, shape) in spec.items()}]

    class ServingModule(tf.Module):
        def __init__(self, keras_model):
            super().__init__()
            self.model = keras_model

        @tf.function(input_signature=signature)
        def serve(self, inputs):
            p = self.model(transform(inputs, layout), training=False)
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


# ------------------------------------------------------------------ export
def export_version(settings: Settings, store: ArtifactStore, day: str | dt.date, *, force: bool = False) -> dict:
    """Export the blessed A-CTR model of ``day`` as the next serving version and serve it."""
    from ecdctr_pipeline.modeling import training

    t0 = time.perf_counter()
    day = calendar.parse_date(day, what="--as-of")
    a_prefix = paths.actr_model(day)
    a_manifest = artifacts.read_manifest(store, a_prefix)
    if not a_manifest.blessed:
        verdict = a_manifest.blessing.describe() if a_manifest.blessing else "no blessing record"
        raise ExportRefused(f"A-CTR model {day} was rejected by its gate ({verdict}); not exported")
    of_day = [m for _, m in artifacts.list_artifacts(store, "serving_version") if m.inputs.actr_model == day.isoformat()]
    # versions exported from this very model (a version from before attempts were recorded counts)
    existing = [m for m in of_day if m.inputs.actr_attempt in (None, a_manifest.attempt)]
    if of_day and not existing and not force:  # the day was retrained since it was exported
        current = read_served(store).get("version")
        served_day = next((m.inputs.actr_model for _, m in artifacts.list_artifacts(store, "serving_version")
                           if current is not None and int(m.artifact_id) == current), None)
        if served_day is not None and served_day > day.isoformat():
            log.warning("export %s: A-CTR %s was retrained (attempt %s) but the served version %s is a newer "
                        "day's model (%s): not exported", day, day, a_manifest.attempt, current, served_day)
            return {"version": None, "skipped": True, "actr_model": day.isoformat(), "served": current,
                    "reason": f"retrained, but a newer day's model ({served_day}) is served"}
        log.warning("export %s: A-CTR %s was retrained since version %s was exported: exporting attempt %s",
                    day, day, max(int(m.artifact_id) for m in of_day), a_manifest.attempt)
    if existing and not force:
        m = max(existing, key=lambda x: int(x.artifact_id))
        version, state = int(m.artifact_id), read_served(store)
        ever_served = any(h.get("version") == version for h in state.get("history", []))
        current = state.get("version")
        if not ever_served and (current is None or version > current):
            # an export killed between its version's manifest and the served pointer: finish it
            store.check_access()
            state = set_served(store, settings.serving.model_name, version, reason=f"export of A-CTR {day} (resumed)")
            removed = prune_versions(store, settings.serving.keep_versions)
            return {"version": version, "skipped": False, "resumed": True, "actr_model": day.isoformat(),
                    "served": state["version"], "pruned": removed, "seconds": round(time.perf_counter() - t0, 2)}
        return {"version": version, "skipped": True, "actr_model": day.isoformat(), "served": current}
    store.check_access()  # a read-only store fails before the model is loaded and converted
    fs = settings.features.feature_schema()
    artifacts.require_schema(a_manifest, fs, who=f"export {day}")
    actr = training.load_model(store, a_prefix, a_manifest)
    served_model = build_serving_model(actr, settings)
    # check equivalence on the day's holdout before publishing: the training graph (the shared
    # input pipeline and the attention over the monthly tables) vs the SavedModel's signature
    plan = calendar.actr_plan(day, settings.calendar)
    layout = FeatureLayout.complete(settings.features)
    # the holdout rows the model was judged on: the feature-table version its manifest recorded
    ad = paths.complete_features("ad")
    table, _ = training.read_features(store, ad, plan.holdout_window, layout, who=f"export {day}",
                                      version=a_manifest.inputs.delta_tables.get(ad))
    rows = raw_rows(table, settings)
    versions = [int(m.artifact_id) for _, m in artifacts.list_artifacts(store, "serving_version")]
    version = max(versions, default=0) + 1
    scratch = store.scratch_dir("ecdctr-export-")
    try:
        out = scratch / str(version)
        export_saved_model(served_model, settings, out)
        write_warmup(out, rows, settings.serving.model_name)
        from ecdctr_pipeline.serving.client import LocalScorer

        want = training.predict(actr, raw_columns(table, layout), layout)
        got = LocalScorer(out).predict(rows)
        max_diff = float(np.max(np.abs(got - want)))
        if max_diff > 1e-5:
            raise EcdctrError(f"export {day}: serving model differs from A-CTR by {max_diff:.2e} (> 1e-5); not published")
        files = {p.relative_to(out).as_posix(): p for p in sorted(out.rglob("*")) if p.is_file()}
        manifest = artifacts.Manifest(
            kind="serving_version", artifact_id=str(version), logical_date=day.isoformat(),
            data_window=a_manifest.data_window, months=a_manifest.months,
            inputs=artifacts.Inputs(actr_model=day.isoformat(), actr_attempt=a_manifest.attempt,
                                    cpm_checkpoint=a_manifest.inputs.cpm_checkpoint,
                                    embedding_set=a_manifest.inputs.embedding_set,
                                    embedding_months=a_manifest.inputs.embedding_months,
                                    delta_tables=a_manifest.inputs.delta_tables,
                                    raw_tables=a_manifest.inputs.raw_tables),
            metrics=a_manifest.metrics, feature_schema=fs.identity.to_dict(),
            extra={"signature": {k: [d, list(s)] for k, (d, s) in serving_input_spec(settings).items()},
                   "output": OUTPUT_KEY, "model_bytes": _dir_size(out), "equivalence_max_abs_diff": max_diff,
                   "merged_rows": {"user": int(served_model.get_layer("hist_user").vocab_size) + 1,
                                   "item": int(served_model.get_layer("hist_item").vocab_size) + 1}},
        )
        manifest = artifacts.publish(store, paths.serving_version(version), files, manifest, flat=True,
                                     last=("saved_model.pb",))
        lineage.emit(settings.orchestration, store, paths.serving_version(version), manifest)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    state = set_served(store, settings.serving.model_name, version, reason=f"export of A-CTR {day}")
    removed = prune_versions(store, settings.serving.keep_versions)
    return {"version": version, "skipped": False, "actr_model": day.isoformat(), "served": state["version"],
            "equivalence_max_abs_diff": max_diff, "pruned": removed, "seconds": round(time.perf_counter() - t0, 2)}
