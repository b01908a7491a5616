"""Where one training step of the complete model spends its time (``make bench-train``'s
breakdown), measured in one process on batches of the real feature table:

* **input** — the trainers' streaming pipeline alone (Parquet record batches → shuffle buffer →
  the shared preprocessing graph), one full pass, no model;
* **forward, by block** — the network cut after each block (id + sequence embeddings, DIN
  attention, the other embeddings / counters / historical vectors up to ``features_concat``, the
  cross network, the MLP, the output), each cut a traced function run on the same cached batches;
  a block's time is its cut's minus the previous cut's;
* **backward** — gradients of the loss (tape) minus the forward pass;
* **optimizer** — the Adam update of those gradients (a full hand-written step minus backward);
* **Keras step overhead** — Keras's own compiled train function (loss tracker, the AUC metric,
  the step counter) minus the hand-written step.

Each figure is the median over ``--repeat`` timed rounds of all cached batches, in milliseconds
per step, with its share of Keras's step. Run as a subprocess (``bench_train.py`` starts it):

    python -m benchmarks.train_stages --table features/complete/ad --start 2026-10-27 --end 2026-11-23
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

# the cuts, in network order: (stage, the layers whose outputs end it)
CUTS = (
    ("id and sequence embeddings", ("flat_user_id", "flat_item_id", "flat_category_id", "seq_concat")),
    ("DIN attention", ("din_attention",)),
    ("other embeddings, counters, concat", ("features_concat",)),
    ("cross network", ("cross",)),
    ("MLP (BatchNorm)", ("mlp",)),
    ("output", ("ctr",)),
)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--table", default="features/complete/ad")
    p.add_argument("--start", required=True)
    p.add_argument("--end", required=True)
    p.add_argument("--batch", type=int, default=512)
    p.add_argument("--batches", type=int, default=20, help="batches cached and timed per round")
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--jit", action="store_true", help="XLA-compile the traced functions")
    return p


def _median_ms(fn, batches, repeat: int) -> float:
    for x, y in batches[:2]:  # trace and warm up
        fn(x, y)
    rounds = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        for x, y in batches:
            out = fn(x, y)
        _ = [t.numpy() for t in (out if isinstance(out, (list, tuple)) else [out])][:1]
        rounds.append((time.perf_counter() - t0) / len(batches))
    return 1000 * statistics.median(rounds)


def run(a: argparse.Namespace) -> dict:
    import keras
    import tensorflow as tf

    from ecdctr_pipeline.core import calendar
    from ecdctr_pipeline.core.settings import load_settings
    from ecdctr_pipeline.data import delta
    from ecdctr_pipeline.data.store import open_store
    from ecdctr_pipeline.modeling import streaming
    from ecdctr_pipeline.modeling.models import build_complete_model, compile_model
    from ecdctr_pipeline.modeling.preprocessing import FeatureLayout

    s = load_settings()
    store = open_store(s.store)
    window = calendar.Window(dt.date.fromisoformat(a.start), dt.date.fromisoformat(a.end))
    source = streaming.WindowSource.open(store, a.table, delta.version(store, a.table), window)
    layout = FeatureLayout.complete(s.features)
    ds = streaming.make_dataset(source, layout, a.batch, shuffle=True, seed=0,
                                buffer_rows=s.training.shuffle_buffer_rows, read_rows=s.training.read_batch_rows)
    t0 = time.perf_counter()
    batches = []
    for x, y in ds:  # one full pass: the input pipeline's own rate
        if len(batches) < a.batches:
            batches.append((x, y))
    input_s = time.perf_counter() - t0
    input_ms = 1000 * input_s / -(-source.num_rows // a.batch)

    keras.utils.set_random_seed(0)
    model = compile_model(build_complete_model(s.cpm, s.features, None, name="stages"), s.actr.learning_rate,
                          jit_compile=a.jit)
    loss_fn = keras.losses.BinaryCrossentropy()
    jit = bool(a.jit)

    forward = {}
    for i, (stage, names) in enumerate(CUTS):
        outs = [model.get_layer(n).output for _, ns in CUTS[:i + 1] for n in ns]
        cut = keras.Model(model.inputs, outs)

        @tf.function(jit_compile=jit)
        def fwd(x, y, cut=cut):
            r = cut(x, training=True)
            return [tf.reduce_sum(t) for t in (r if isinstance(r, list) else [r])]

        forward[stage] = _median_ms(fwd, batches, a.repeat)

    @tf.function(jit_compile=jit)
    def grads(x, y):
        with tf.GradientTape() as tape:
            loss = loss_fn(tf.reshape(y, (-1, 1)), model(x, training=True))
        g = tape.gradient(loss, model.trainable_variables)
        return [tf.reduce_sum(tf.convert_to_tensor(t)) for t in g[:1]] + [loss]

    @tf.function(jit_compile=jit)
    def step(x, y):
        with tf.GradientTape() as tape:
            loss = loss_fn(tf.reshape(y, (-1, 1)), model(x, training=True))
        model.optimizer.apply(tape.gradient(loss, model.trainable_variables), model.trainable_variables)
        return loss

    backward_ms = _median_ms(grads, batches, a.repeat)
    step_ms = _median_ms(step, batches, a.repeat)
    model.make_train_function()
    train_fn = model.train_function
    it = iter(tf.data.Dataset.from_tensors(0).repeat().map(lambda _: batches[0]))  # noqa: B023

    def keras_step(x, y):
        out = train_fn(it)  # the logs (an Optional of them in some Keras versions)
        return (out.get_value() if hasattr(out, "get_value") else out)["loss"]

    keras_ms = _median_ms(keras_step, batches, a.repeat)
    rows, prev = [], 0.0
    for stage, _ in CUTS:
        rows.append((f"forward: {stage}", forward[stage] - prev))
        prev = forward[stage]
    rows += [("backward (gradients)", backward_ms - prev), ("optimizer (Adam update)", step_ms - backward_ms),
             ("Keras step overhead (loss tracker, AUC metric)", keras_ms - step_ms)]
    return {"batch": a.batch, "jit": jit, "rows_per_pass": source.num_rows, "input_ms_per_batch": input_ms,
            "keras_step_ms": keras_ms, "stages": rows}


def main(argv: list[str] | None = None) -> int:
    print(json.dumps(run(parser().parse_args(argv))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
