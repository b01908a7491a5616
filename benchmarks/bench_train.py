"""make bench-train: A-CTR training throughput and GAUC speed.

1. samples/s of A-CTR training on CPU fed by the Delta → Arrow → tf.data pipeline, against
   the same model fed from in-memory tensors (one cached batch repeated: no input cost) in
   the same run. Target: ratio >= 0.9 (the pipeline is not the bottleneck).
2. GAUC on 10 M rows: the vectorised implementation against a per-user scikit-learn loop.
   Target: >= 20x faster.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from benchmarks.common import save  # noqa: E402


def bench_training(repeat: int) -> list[tuple]:
    import numpy as np
    import tensorflow as tf

    from ecdctr_pipeline.core import calendar, paths
    from ecdctr_pipeline.data import delta, extract
    from ecdctr_pipeline.modeling.inputs import make_dataset
    from ecdctr_pipeline.modeling.preprocessing import FeatureLayout, raw_columns, transform
    from ecdctr_pipeline.modeling.models import HistoricalTables, build_complete_model, compile_model
    from ecdctr_pipeline.core.settings import Settings
    from ecdctr_pipeline.data.simulate import simulate
    from ecdctr_pipeline.data.store import open_store

    work = Path(tempfile.mkdtemp(prefix="ecdctr-bench-train-"))
    try:
        s = Settings.model_validate({"store": {"root": f"file://{work}"}, "features": {"engine": "duckdb"}})
        day = dt.date(2026, 11, 24)
        plan = calendar.actr_plan(day, s.calendar)
        store = open_store(s.store)
        print("simulating small ad data and extracting features", file=sys.stderr)
        simulate(store, plan.window.start - dt.timedelta(days=28), day - dt.timedelta(days=1), "small", seed=0,
                 domains=("ad",), progress=False)
        extract.extract_complete(s, store, "ad", day)
        f = s.features
        layout = FeatureLayout.complete(f)
        rng = np.random.default_rng(0)
        hist = HistoricalTables("bench", ("a", "b", "c"), np.arange(6000, dtype=np.int64),
                                rng.normal(size=(6000, 3, 16)).astype("float32"), np.arange(1500, dtype=np.int64),
                                rng.normal(size=(1500, 3, 16)).astype("float32"))
        bs = s.actr.batch_size

        epochs = s.actr.epochs

        def pipeline_epoch(model):
            # what the trainer does: read the Delta snapshot once, then `epochs` passes of tf.data
            table, _ = delta.read(store, paths.complete_features("ad"), partitions=plan.train_window.partitions(),
                                  columns=list(layout.columns))
            arrays = raw_columns(table, layout)
            model.fit(make_dataset(arrays, layout, bs, shuffle=True), epochs=epochs, verbose=0, shuffle=False)
            return len(arrays["click"]) * epochs

        table, _ = delta.read(store, paths.complete_features("ad"), partitions=plan.train_window.partitions())
        arrays = raw_columns(table, layout)
        n = len(arrays["click"])
        one = (transform({k: tf.constant(v[:bs]) for k, v in arrays.items() if k != "click"}, layout),
               tf.constant(arrays["click"][:bs]))

        def memory_epoch(model):
            ds = tf.data.Dataset.from_tensors(one).repeat(-(-n // bs))
            model.fit(ds, epochs=epochs, verbose=0, shuffle=False)
            return (-(-n // bs)) * bs * epochs

        out = []
        for name, fn in (("in-memory tensors (reference)", memory_epoch), ("Delta → tf.data pipeline", pipeline_epoch)):
            model = compile_model(build_complete_model(s.cpm, s.features, hist, name="actr"), s.actr.learning_rate)
            fn(model)  # warm-up: tracing
            rates = []
            for _ in range(repeat):
                t0 = time.perf_counter()
                rows = fn(model)
                rates.append(rows / (time.perf_counter() - t0))
            out.append((name, n, statistics.median(rates)))
        return out
    finally:
        shutil.rmtree(work, ignore_errors=True)


def bench_gauc(n: int, users: int, repeat: int) -> list[tuple]:
    import numpy as np
    from sklearn.metrics import roc_auc_score

    from ecdctr_pipeline.evaluation.metrics import gauc

    rng = np.random.default_rng(1)
    u = rng.integers(0, users, n)
    y = (rng.random(n) < 0.1).astype(np.int8)
    p = rng.random(n).astype(np.float32)
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        ours = gauc(y, p, u).gauc
        times.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    order = np.argsort(u, kind="stable")
    us, ys, ps = u[order], y[order], p[order]
    bounds = np.flatnonzero(np.diff(us)) + 1
    num = den = 0.0
    for yy, pp in zip(np.split(ys, bounds), np.split(ps, bounds)):
        if 0 < yy.sum() < len(yy):
            num += roc_auc_score(yy, pp) * len(yy)
            den += len(yy)
    ref_t = time.perf_counter() - t0
    assert abs(num / den - ours) < 1e-9, (num / den, ours)
    return [("per-user scikit-learn loop (reference)", n, ref_t), ("ecdctr_pipeline.evaluation.metrics.gauc", n,
                                                                    statistics.median(times))]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--gauc-rows", type=int, default=10_000_000)
    p.add_argument("--gauc-users", type=int, default=200_000)
    p.add_argument("--skip-gauc", action="store_true", help="only the training throughput")
    args = p.parse_args(argv)
    from ecdctr_pipeline.core.report import markdown_table

    train = bench_training(args.repeat)
    ref = train[0][2]
    t1 = markdown_table(("feed", "rows per run", "median samples/s", "ratio vs in-memory"),
                        [(name, n, f"{r:,.0f}", f"{r / ref:.2f}") for name, n, r in train])
    if args.skip_gauc:
        text = (f"A-CTR training on CPU, small ad window (one run = one Delta read + actr.epochs passes), median of "
                f"{args.repeat} runs\n\n{t1}\n\nTarget: pipeline/in-memory >= 0.9 "
                f"({'met' if train[1][2] / ref >= 0.9 else 'NOT met'}).")
        print(text)
        save("train", text)
        return 0
    print("timing GAUC", file=sys.stderr)
    g = bench_gauc(args.gauc_rows, args.gauc_users, args.repeat)
    t2 = markdown_table(("GAUC implementation", "rows", "seconds", "speed-up vs sklearn loop"),
                        [(name, n, f"{t:.2f}", f"{g[0][2] / t:.1f}x") for name, n, t in g])
    text = (f"A-CTR training on CPU, small ad window (one run = one Delta read + actr.epochs passes), median of "
            f"{args.repeat} runs\n\n{t1}\n\n"
            f"Target: pipeline/in-memory >= 0.9 ({'met' if train[1][2] / ref >= 0.9 else 'NOT met'}).\n\n"
            f"GAUC on {args.gauc_rows:,} rows / {args.gauc_users:,} users (median of {args.repeat}; the sklearn "
            f"loop once)\n\n{t2}\n\nTarget: >= 20x ({'met' if g[0][2] / g[1][2] >= 20 else 'NOT met'}).")
    print(text)
    print(f"\nsaved to {save('train', text)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
