"""make bench-train (make bench-gpu: the same on a GPU, mixed precision): the trainers' input,
memory, compute efficiency and workers, on A-CTR's window at ``small`` scale. Each training
run is a subprocess (``benchmarks/train_worker.py``, the trainers' own ``fit``) so its peak RSS
is its own.

1. samples/s of streaming training (the trainers' path: Parquet record batches of the pinned
   Delta version → tf.data) against the in-memory reference (the whole window read into NumPy
   first, then tf.data over it), median epoch time after the first. Goal: ratio >= 0.9.
2. Peak RSS of one epoch at 1x, 4x and 8x the window's rows (the window's files copied 4 / 8
   times into another Delta table), streaming and in-memory. Goal: streaming 8x within 1.3x
   of streaming 1x.
3. Achieved FLOP/s: model FLOPs per sample (3x the forward pass counted by TensorFlow's
   profiler: forward + two backward matmuls) x streaming samples/s, as a percentage of the
   device's peak measured by a float32 matmul microbenchmark in the same run.
4. 1 vs 2 workers (MultiWorkerMirroredStrategy, 2 processes on 127.0.0.1, same global batch):
   samples/s of the whole job (reported, no goal: on a 2-core machine each worker gets 1 core).
5. GAUC on 10 M rows: the vectorised implementation against a per-user scikit-learn loop.
   Target: >= 20x faster.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from benchmarks.common import save  # noqa: E402

MULTIPLES = (1, 4, 8)


def prepare(work: Path) -> tuple[Path, dict, object]:
    """Small ad data, its features, and the 4x / 8x copies; returns (config file, tables, window)."""
    import yaml

    from ecdctr_pipeline.core import calendar, paths
    from ecdctr_pipeline.core.settings import Settings
    from ecdctr_pipeline.data import delta, extract
    from ecdctr_pipeline.data.simulate import simulate
    from ecdctr_pipeline.data.store import open_store

    config = {"store": {"root": f"file://{work}"}, "features": {"engine": "duckdb"}}
    s = Settings.model_validate(config)
    day = dt.date(2026, 11, 24)
    plan = calendar.actr_plan(day, s.calendar)
    store = open_store(s.store)
    print("simulating small ad data and extracting features", file=sys.stderr)
    simulate(store, plan.window.start - dt.timedelta(days=28), day - dt.timedelta(days=1), "small", seed=0,
             domains=("ad",), progress=False)
    extract.extract_complete(s, store, "ad", day)
    base = paths.complete_features("ad")
    tables = {1: base}
    table, _ = delta.read(store, base, partitions=plan.train_window.partitions())
    for k in MULTIPLES[1:]:
        name = f"features/bench_ad_x{k}"
        for _ in range(k):
            delta.write(store, name, table, mode="append")
        tables[k] = name
    path = work / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path, tables, plan.train_window


def worker(config: Path, table: str, window, *extra: str, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "benchmarks.train_worker", "--table", table, "--start", str(window.start),
         "--end", str(window.end), *extra], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**{k: v for k, v in os.environ.items() if not k.startswith("ECDCTR_")}, "ECDCTR_CONFIG": str(config),
             "PYTHONPATH": str(ROOT), **(env or {})})


def result(proc: subprocess.Popen) -> dict:
    out, err = proc.communicate()
    if proc.returncode != 0:
        raise SystemExit(f"bench-train: a training run failed:\n{err[-3000:]}")
    return json.loads(out.strip().splitlines()[-1])


def rate(r: dict) -> float:
    """samples/s of one replica group: rows / median epoch seconds after the first epoch."""
    epochs = r["epoch_seconds"][1:] or r["epoch_seconds"]
    return r["rows"] / statistics.median(epochs)


def model_flops_per_sample(config: Path) -> float:
    """3x the forward FLOPs of the complete model for one sample (TF profiler on the graph)."""
    import tensorflow as tf
    from tensorflow.python.profiler import model_analyzer, option_builder

    from ecdctr_pipeline.core.settings import load_settings
    from ecdctr_pipeline.modeling.models import build_complete_model

    s = load_settings(config)
    model = build_complete_model(s.cpm, s.features, None, name="flops")
    spec = {t.name.split(":")[0]: tf.TensorSpec((1, *t.shape[1:]), t.dtype) for t in model.inputs}
    fn = tf.function(lambda x: model(x, training=False)).get_concrete_function(
        {k: spec[k] for k in model.input})  # model.input: the dict of named inputs
    opts = option_builder.ProfileOptionBuilder.float_operation()
    opts["output"] = "none"
    flops = model_analyzer.profile(graph=fn.graph, options=opts).total_float_ops
    return 3.0 * flops


def matmul_peak(device: str, n: int = 2048, dtype: str = "float32", repeat: int = 5) -> float:
    """FLOP/s of an n x n matmul on ``device`` (median of ``repeat`` timed batches of 10)."""
    import tensorflow as tf

    with tf.device(device):
        a = tf.random.normal((n, n), dtype=dtype)
        b = tf.random.normal((n, n), dtype=dtype)

        @tf.function
        def ten(a, b):
            c = a
            for _ in range(10):
                c = tf.matmul(c, b) * 1e-3
            return c

        ten(a, b).numpy()
        times = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            ten(a, b).numpy()
            times.append(time.perf_counter() - t0)
    return 10 * 2 * n ** 3 / statistics.median(times)


def bench_training(repeat: int, gpu: bool) -> str:
    from ecdctr_pipeline.core.report import markdown_table

    work = Path(tempfile.mkdtemp(prefix="ecdctr-bench-train-"))
    try:
        config, tables, window = prepare(work)
        common = ["--batch", "512"] + (["--mixed-precision"] if gpu else [])
        epochs = str(1 + repeat)
        runs: dict[tuple[str, int], dict] = {}
        for k in MULTIPLES:
            for mode in ("memory", "stream"):
                print(f"training: {mode} input, {k}x the rows", file=sys.stderr)
                runs[mode, k] = result(worker(config, tables[k], window, "--input", mode, "--epochs",
                                              epochs if k == 1 else "1", *common))
        print("training: 2 workers", file=sys.stderr)
        from ecdctr_pipeline.core.net import free_port

        hosts = f"127.0.0.1:{free_port()},127.0.0.1:{free_port()}"
        pair = [worker(config, tables[1], window, "--distribution", "multi_worker", "--epochs", epochs, *common,
                       env={"TRAINER_WORKER_HOSTS": hosts, "JOB_COMPLETION_INDEX": str(i)}) for i in range(2)]
        two = [result(p) for p in pair]
        mem, stream = rate(runs["memory", 1]), rate(runs["stream", 1])
        t1 = markdown_table(("input", "rows", "median samples/s", "ratio vs in-memory"), [
            ("in-memory NumPy → tf.data (reference)", runs["memory", 1]["rows"], f"{mem:,.0f}", "1.00"),
            ("streaming Parquet → tf.data (trainers)", runs["stream", 1]["rows"], f"{stream:,.0f}",
             f"{stream / mem:.2f}")])
        base_rss = runs["stream", 1]["max_rss_mb"]
        t2 = markdown_table(("rows", "x", "in-memory peak RSS MB", "streaming peak RSS MB", "streaming vs streaming 1x"),
                            [(runs["stream", k]["rows"], f"{k}x", f"{runs['memory', k]['max_rss_mb']:,.0f}",
                              f"{runs['stream', k]['max_rss_mb']:,.0f}",
                              f"{runs['stream', k]['max_rss_mb'] / base_rss:.2f}") for k in MULTIPLES])
        import tensorflow as tf

        device = "/GPU:0" if gpu else "/CPU:0"
        peak = matmul_peak(device, dtype="float16" if gpu else "float32")
        per_sample = model_flops_per_sample(config)
        achieved = per_sample * stream
        t3 = markdown_table(("quantity", "value"), [
            ("model FLOPs per training sample (3x forward)", f"{per_sample:,.0f}"),
            ("streaming samples/s", f"{stream:,.0f}"),
            ("achieved model FLOP/s", f"{achieved / 1e9:,.2f} G"),
            (f"{'float16' if gpu else 'float32'} matmul peak on {device} (2048², median of 5)", f"{peak / 1e9:,.1f} G"),
            ("achieved / peak", f"{100 * achieved / peak:.2f} %")])
        job2 = sum(r["rows"] for r in two[:1]) / statistics.median(
            [max(a, b) for a, b in zip(two[0]["epoch_seconds"][1:], two[1]["epoch_seconds"][1:])])
        t4 = markdown_table(("placement", "samples/s (whole job)", "ratio vs 1 worker"), [
            ("1 worker, one device (reference)", f"{stream:,.0f}", "1.00"),
            ("2 workers, MultiWorkerMirroredStrategy on 127.0.0.1", f"{job2:,.0f}", f"{job2 / stream:.2f}")])
        cpus = os.cpu_count()
        rss_ok = runs["stream", 8]["max_rss_mb"] / base_rss <= 1.3
        return (f"A-CTR complete model, `small` ad window, global batch 512, {'GPU, mixed_float16' if gpu else 'CPU'} "
                f"({cpus} cores, TensorFlow {tf.__version__}); samples/s = rows / median epoch time of epochs 2..{epochs}"
                f"\n\n{t1}\n\nGoal: streaming / in-memory >= 0.9 ({'met' if stream / mem >= 0.9 else 'NOT met'})."
                f"\n\nPeak RSS of one epoch (one process each)\n\n{t2}\n\nGoal: streaming 8x within 1.3x of 1x "
                f"({'met' if rss_ok else 'NOT met'}).\n\nCompute efficiency\n\n{t3}\n\nWorkers (2 processes share "
                f"this machine's {cpus} cores)\n\n{t4}\n\n2-worker losses {two[0]['losses']} vs 1 worker "
                f"{runs['stream', 1]['losses']}.")
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
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeat", type=int, default=3, help="timed epochs (after one warm-up epoch)")
    p.add_argument("--gauc-rows", type=int, default=10_000_000)
    p.add_argument("--gauc-users", type=int, default=200_000)
    p.add_argument("--skip-gauc", action="store_true", help="only the training benchmarks")
    p.add_argument("--gpu", action="store_true", help="train on the first GPU with mixed precision (make bench-gpu)")
    args = p.parse_args(argv)
    if args.gpu:
        import tensorflow as tf

        if not tf.config.list_physical_devices("GPU"):
            print("bench-gpu: error: TensorFlow sees no GPU on this machine (tf.config.list_physical_devices)",
                  file=sys.stderr)
            return 2
    from ecdctr_pipeline.core.report import markdown_table

    text = bench_training(args.repeat, args.gpu)
    if not args.skip_gauc and not args.gpu:
        print("timing GAUC", file=sys.stderr)
        g = bench_gauc(args.gauc_rows, args.gauc_users, args.repeat)
        t = markdown_table(("GAUC implementation", "rows", "seconds", "speed-up vs sklearn loop"),
                           [(name, n, f"{sec:.2f}", f"{g[0][2] / sec:.1f}x") for name, n, sec in g])
        text += (f"\n\nGAUC on {args.gauc_rows:,} rows / {args.gauc_users:,} users (median of {args.repeat}; the "
                 f"sklearn loop once)\n\n{t}\n\nTarget: >= 20x ({'met' if g[0][2] / g[1][2] >= 20 else 'NOT met'}).")
    print(text)
    print(f"\nsaved to {save('gpu' if args.gpu else 'train', text)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
