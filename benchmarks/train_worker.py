"""One training process of the complete model on a window of a feature table, through the
trainers' own path (:func:`ecdctr_pipeline.modeling.training.fit` on a streaming
:class:`~ecdctr_pipeline.modeling.streaming.WindowSource` under a
:mod:`~ecdctr_pipeline.modeling.distribute` placement). Prints one JSON line: the loss of
every epoch, samples, seconds, the placement and peak RSS.

The distribution tests and ``make bench-train`` start it as a subprocess: the mirrored runs
need the CPU split into logical devices before TensorFlow starts, the multi-worker runs need
one process per worker (``TRAINER_WORKER_HOSTS`` + ``JOB_COMPLETION_INDEX``, as in a pod).

    python -m benchmarks.train_worker --table features/complete/ad --start 2026-10-27 \\
        --end 2026-11-23 --distribution mirrored --cpus 2 --batch 256 --epochs 3

Settings come from ``ECDCTR_CONFIG`` and ``ECDCTR_*`` like every command.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--table", default="features/complete/ad")
    p.add_argument("--start", required=True, help="first day of the window")
    p.add_argument("--end", required=True, help="day after the window")
    p.add_argument("--distribution", default="none", choices=("none", "mirrored", "multi_worker"))
    p.add_argument("--cpus", type=int, default=1, help="logical CPU devices to split the host CPU into")
    p.add_argument("--batch", type=int, default=256, help="global batch size")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="TF intra-op threads (0: TensorFlow's default)")
    p.add_argument("--mixed-precision", action="store_true", help="mixed_float16 (GPU benchmarks)")
    p.add_argument("--input", choices=("stream", "memory"), default="stream",
                   help="memory: the reference that reads the whole window into memory first")
    p.add_argument("--score-start", help="after training, score this window's rows (with --score-end)")
    p.add_argument("--score-end")
    p.add_argument("--scores-out", type=Path, help="where the scored rows go (.npz: labels, users, scores)")
    return p


def run(a: argparse.Namespace, settings=None) -> dict:
    """Train as ``a`` says (settings: ``settings``, else ECDCTR_CONFIG / ECDCTR_*); the result."""
    import keras
    import tensorflow as tf

    if a.threads:
        tf.config.threading.set_intra_op_parallelism_threads(a.threads)
        tf.config.threading.set_inter_op_parallelism_threads(a.threads)
    from ecdctr_pipeline.core import calendar
    from ecdctr_pipeline.core.settings import load_settings
    from ecdctr_pipeline.data import delta
    from ecdctr_pipeline.data.store import open_store
    from ecdctr_pipeline.modeling import distribute
    from ecdctr_pipeline.modeling.models import build_complete_model, compile_model
    from ecdctr_pipeline.modeling.preprocessing import FeatureLayout
    from ecdctr_pipeline.modeling.streaming import WindowSource
    from ecdctr_pipeline.modeling.training import HParams, fit

    if a.cpus > 1:
        distribute.split_cpu(a.cpus)
    if a.mixed_precision:
        keras.mixed_precision.set_global_policy("mixed_float16")
    s = settings or load_settings()
    store = open_store(s.store)
    window = calendar.Window(dt.date.fromisoformat(a.start), dt.date.fromisoformat(a.end))
    source = WindowSource.open(store, a.table, delta.version(store, a.table), window)
    training = s.training.model_copy(update={"distribution": a.distribution})
    place = distribute.placement(a.distribution)
    layout = FeatureLayout.complete(s.features)
    keras.utils.set_random_seed(a.seed)
    try:
        from ecdctr_pipeline.modeling.models import compile_options
    except ImportError:  # make bench-train's reference commit predates them: its compile_model's defaults
        def compile_options(training) -> dict:
            return {}
    with place.strategy.scope():
        model = compile_model(build_complete_model(s.cpm, s.features, None, name="bench"), s.actr.learning_rate,
                              **compile_options(training))

    losses: list[float] = []

    class Log(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            losses.append(float(logs["loss"]))

    epoch_s: list[float] = []

    first_step: list[float] = []

    class Clock(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.t = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            if not first_step:  # process start (the parent's launch time) to the end of the first step
                first_step.append(time.time() - float(os.environ.get("BENCH_LAUNCHED_AT", time.time())))

        def on_epoch_end(self, epoch, logs=None):
            epoch_s.append(time.perf_counter() - self.t)

    hp = HParams(s.actr.learning_rate, a.batch, a.epochs, a.seed)
    t0 = time.perf_counter()
    if a.input == "memory":
        from ecdctr_pipeline.modeling.inputs import make_dataset
        from ecdctr_pipeline.modeling.preprocessing import raw_columns

        table, _ = delta.read(store, a.table, partitions=window.partitions(), columns=list(layout.columns))
        arrays = raw_columns(table, layout)
        del table
        model.fit(make_dataset(arrays, layout, a.batch, shuffle=True, seed=a.seed), epochs=a.epochs, verbose=0,
                  shuffle=False, callbacks=[Log(), Clock()])
    else:
        fit(model, source, layout, hparams=hp, training=training, label="train_worker", callbacks=(Log(), Clock()))
    seconds = time.perf_counter() - t0
    if a.score_start:  # the trained model's scores of another window (make bench-train's paired GAUC)
        import numpy as np

        from ecdctr_pipeline.modeling.streaming import score_stream

        held = calendar.Window(dt.date.fromisoformat(a.score_start), dt.date.fromisoformat(a.score_end))
        labels, scores, users = score_stream(model, WindowSource.open(store, a.table, delta.version(store, a.table),
                                                                      held), layout)
        np.savez(a.scores_out, labels=labels, scores=scores, users=users)
    return {"first_step_s": first_step[0] if first_step else None,"losses": losses, "seconds": seconds, "epoch_seconds": epoch_s, "samples": source.num_rows * a.epochs,
            "rows": source.num_rows, "placement": place.describe(), "worker": place.worker,
            "replicas": place.replicas, "input": a.input,
            "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main(argv: list[str] | None = None) -> int:
    print(json.dumps(run(parser().parse_args(argv))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
