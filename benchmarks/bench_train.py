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
6. The reference trainer: the same streaming run at the same batch on the same table, by the
   trainer of commit ``--reference`` (default ``d4f7b15``, before issue 32), checked out as a git
   worktree and run with this file's worker (``train_worker.py`` copied in, so only the trainer
   code differs). Reported: samples/s of ours / the reference's (goal >= 4x), the time from
   launching the process to the end of the first step (goal <= 3 s), and the GAUC of both models
   on the window's holdout days, paired by (day, user) with a bootstrap interval (goal: ours no
   worse).
7. The paper's batch (10 000): samples/s and achieved / peak FLOP/s (goal >= 25 %).
8. Where a step's time goes (``train_stages.py``): the input pipeline alone, the forward pass
   block by block, backward, the optimizer and Keras's own step, at 512 and 10 000.
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
REFERENCE = "d4f7b15"  # the trainer before issue 32
PAPER_BATCH = 10_000


def prepare(work: Path) -> tuple[Path, dict, object, object]:
    """Small ad data, its features, and the 4x / 8x copies; returns (config file, tables, train
    window, holdout window)."""
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
    return path, tables, plan.train_window, plan.holdout_window


def reference_tree(work: Path, commit: str) -> Path:
    """A git worktree of ``commit`` with this checkout's ``train_worker.py`` (the harness) copied in."""
    tree = work / f"reference-{commit}"
    r = subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree), commit],
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"bench-train: cannot check out the reference commit {commit}: {r.stderr.strip()[-300:]}")
    shutil.copy(ROOT / "benchmarks" / "train_worker.py", tree / "benchmarks" / "train_worker.py")
    return tree


def remove_tree(tree: Path) -> None:
    subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)], capture_output=True)


def worker(config: Path, table: str, window, *extra: str, env: dict | None = None, root: Path = ROOT,
           module: str = "benchmarks.train_worker") -> subprocess.Popen:
    """A training process (``module``) of the code under ``root`` (this checkout, or the reference's)."""
    return subprocess.Popen(
        [sys.executable, "-m", module, "--table", table, "--start", str(window.start),
         "--end", str(window.end), *extra], cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**{k: v for k, v in os.environ.items() if not k.startswith("ECDCTR_")}, "ECDCTR_CONFIG": str(config),
             "PYTHONPATH": str(root), "BENCH_LAUNCHED_AT": repr(time.time()), **(env or {})})


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


def stages(config: Path, table: str, window, batch: int, root: Path = ROOT) -> dict:
    return result(worker(config, table, window, "--batch", str(batch), "--batches", "6", "--repeat", "3",
                         root=root, module="benchmarks.train_stages"))


def paired_gauc(ours: Path, ref: Path) -> dict:
    """GAUC of our model minus the reference's on the same holdout rows, paired by user."""
    import numpy as np

    from ecdctr_pipeline.evaluation.metrics import paired_gauc_lift

    a, b = np.load(ours), np.load(ref)
    if not (np.array_equal(a["labels"], b["labels"]) and np.array_equal(a["users"], b["users"])):
        raise SystemExit("bench-train: the two trainers scored different holdout rows")
    return paired_gauc_lift([(a["labels"], a["users"], a["scores"], b["scores"])])


def bench_training(repeat: int, gpu: bool, reference: str) -> str:
    from ecdctr_pipeline.core.report import markdown_table

    work = Path(tempfile.mkdtemp(prefix="ecdctr-bench-train-"))
    tree = None
    try:
        config, tables, window, holdout = prepare(work)
        common = ["--batch", "512"] + (["--mixed-precision"] if gpu else [])
        epochs = str(1 + repeat)
        scoring = ["--score-start", str(holdout.start), "--score-end", str(holdout.end)]
        stream_only = {"ECDCTR_TRAINING__INPUT_CACHE_MB": "0"}  # the memory bound of streaming itself
        runs: dict[tuple[str, int], dict] = {}
        if not gpu:
            tree = reference_tree(work, reference)
            print(f"training: the reference trainer ({reference}), streaming, 1x", file=sys.stderr)
            ref = result(worker(config, tables[1], window, "--epochs", epochs, *common, *scoring,
                                "--scores-out", str(work / "ref.npz"), root=tree))
        print("training: ours, streaming (decoded once when the window fits training.input_cache_mb), 1x",
              file=sys.stderr)
        ours = result(worker(config, tables[1], window, "--epochs", epochs, *common, *scoring,
                             "--scores-out", str(work / "ours.npz")))
        for k in MULTIPLES:
            for mode in ("memory", "stream"):
                print(f"training: {mode} input{' (no cache)' if mode == 'stream' else ''}, {k}x the rows",
                      file=sys.stderr)
                runs[mode, k] = result(worker(config, tables[k], window, "--input", mode, "--epochs",
                                              epochs if k == 1 else "1", *common,
                                              env=stream_only if mode == "stream" else None))
        print(f"training: ours at the paper's batch {PAPER_BATCH:,}", file=sys.stderr)
        paper = result(worker(config, tables[1], window, "--epochs", epochs, "--batch", str(PAPER_BATCH),
                              *(["--mixed-precision"] if gpu else [])))
        print("training: 2 workers", file=sys.stderr)
        from ecdctr_pipeline.core.net import free_port

        hosts = f"127.0.0.1:{free_port()},127.0.0.1:{free_port()}"
        pair = [worker(config, tables[1], window, "--distribution", "multi_worker", "--epochs", epochs, *common,
                       env={"TRAINER_WORKER_HOSTS": hosts, "JOB_COMPLETION_INDEX": str(i)}) for i in range(2)]
        two = [result(p) for p in pair]
        mem, stream, raw_stream = rate(runs["memory", 1]), rate(ours), rate(runs["stream", 1])
        t1 = markdown_table(("input", "rows", "median samples/s", "ratio vs in-memory"), [
            ("in-memory NumPy → tf.data (reference)", runs["memory", 1]["rows"], f"{mem:,.0f}", "1.00"),
            ("trainers' input: decoded once, kept in memory across epochs", ours["rows"], f"{stream:,.0f}",
             f"{stream / mem:.2f}"),
            ("streaming Parquet every epoch (input_cache_mb: 0)", runs["stream", 1]["rows"], f"{raw_stream:,.0f}",
             f"{raw_stream / mem:.2f}")])
        base_rss = runs["stream", 1]["max_rss_mb"]
        t2 = markdown_table(("rows", "x", "in-memory peak RSS MB", "streaming peak RSS MB", "streaming vs streaming 1x"),
                            [(runs["stream", k]["rows"], f"{k}x", f"{runs['memory', k]['max_rss_mb']:,.0f}",
                              f"{runs['stream', k]['max_rss_mb']:,.0f}",
                              f"{runs['stream', k]['max_rss_mb'] / base_rss:.2f}") for k in MULTIPLES])
        import tensorflow as tf

        device = "/GPU:0" if gpu else "/CPU:0"
        peak = matmul_peak(device, dtype="float16" if gpu else "float32")
        per_sample = model_flops_per_sample(config)
        paper_rate = rate(paper)
        t3 = markdown_table(("quantity", "batch 512", f"batch {PAPER_BATCH:,}"), [
            ("model FLOPs per training sample (3x forward)", f"{per_sample:,.0f}", f"{per_sample:,.0f}"),
            ("samples/s (trainers' input)", f"{stream:,.0f}", f"{paper_rate:,.0f}"),
            ("achieved model FLOP/s", f"{per_sample * stream / 1e9:,.2f} G", f"{per_sample * paper_rate / 1e9:,.2f} G"),
            (f"{'float16' if gpu else 'float32'} matmul peak on {device} (2048², median of 5)", f"{peak / 1e9:,.1f} G",
             f"{peak / 1e9:,.1f} G"),
            ("achieved / peak", f"{100 * per_sample * stream / peak:.2f} %",
             f"{100 * per_sample * paper_rate / peak:.2f} %")])
        job2 = sum(r["rows"] for r in two[:1]) / statistics.median(
            [max(a, b) for a, b in zip(two[0]["epoch_seconds"][1:], two[1]["epoch_seconds"][1:])])
        t4 = markdown_table(("placement", "samples/s (whole job)", "ratio vs 1 worker"), [
            ("1 worker, one device (reference)", f"{stream:,.0f}", "1.00"),
            ("2 workers, MultiWorkerMirroredStrategy on 127.0.0.1", f"{job2:,.0f}", f"{job2 / stream:.2f}")])
        print("timing the stages of a step (512 and the paper's batch)", file=sys.stderr)
        st = {b: stages(config, tables[1], window, b) for b in (512, PAPER_BATCH)}
        t5 = markdown_table(("stage", "ms / step at 512", "share", f"ms / step at {PAPER_BATCH:,}", "share"), [
            ("input pipeline alone (decode, shuffle, preprocess; overlaps the step)",
             f"{st[512]['input_ms_per_batch']:.1f}", "", f"{st[PAPER_BATCH]['input_ms_per_batch']:.1f}", "")] + [
            (name, f"{v:.1f}", f"{100 * v / st[512]['keras_step_ms']:.0f} %", f"{w:.1f}",
             f"{100 * w / st[PAPER_BATCH]['keras_step_ms']:.0f} %")
            for (name, v), (_, w) in zip(st[512]["stages"], st[PAPER_BATCH]["stages"])] + [
            ("Keras train step, whole", f"{st[512]['keras_step_ms']:.1f}", "100 %",
             f"{st[PAPER_BATCH]['keras_step_ms']:.1f}", "100 %")])
        cpus = os.cpu_count()
        rss_ok = runs["stream", 8]["max_rss_mb"] / base_rss <= 1.3
        text = (f"A-CTR complete model, `small` ad window, global batch 512 unless stated, "
                f"{'GPU, mixed_float16' if gpu else 'CPU'} ({cpus} cores, TensorFlow {tf.__version__}); samples/s = rows "
                f"/ median epoch time of epochs 2..{epochs}")
        if not gpu:
            lift = paired_gauc(work / "ours.npz", work / "ref.npz")
            ref_rate = rate(ref)
            t0 = markdown_table(("trainer", "median samples/s", "ratio", "launch → first step s", "holdout GAUC"), [
                (f"reference: commit {reference}", f"{ref_rate:,.0f}", "1.00",
                 f"{ref['first_step_s']:.1f}" if ref.get("first_step_s") else "n/a", f"{lift['gauc_b']:.4f}"),
                ("this checkout (trainers' settings)", f"{stream:,.0f}", f"{stream / ref_rate:.2f}",
                 f"{ours['first_step_s']:.1f}", f"{lift['gauc_a']:.4f}")])
            text += (f"\n\nThis trainer against the reference, same table, batch and epochs\n\n{t0}\n\nGAUC lift "
                     f"(ours - reference) {lift['lift']:+.4f}, 95 % interval [{lift['ci_low']:+.4f}, "
                     f"{lift['ci_high']:+.4f}] over {lift['groups']:,} users of the holdout "
                     f"({holdout.start}..{holdout.end}, paired bootstrap by user). Goals: >= 4x samples/s "
                     f"({'met' if stream / ref_rate >= 4 else 'NOT met'}); first step <= 3 s "
                     f"({'met' if ours['first_step_s'] <= 3 else 'NOT met'}); GAUC no worse "
                     f"({'NOT met: worse' if lift['ci_high'] < 0 else 'met' if lift['ci_low'] >= 0 else 'unresolved: the interval holds 0'}).")
        text += (f"\n\nInput\n\n{t1}\n\nGoal: trainers' input / in-memory >= 0.95 "
                 f"({'met' if stream / mem >= 0.95 else 'NOT met'}).\n\nPeak RSS of one epoch, streaming without the "
                 f"cache (one process each)\n\n{t2}\n\nGoal: streaming 8x within 1.3x of 1x "
                 f"({'met' if rss_ok else 'NOT met'}).\n\nCompute efficiency\n\n{t3}\n\nGoal at the paper's batch: "
                 f">= 25 % of the peak ({'met' if per_sample * paper_rate / peak >= 0.25 else 'NOT met'}).\n\n"
                 f"Where a step's time goes (train_stages.py: medians of 3 rounds of 6 cached batches; a stage = its cut "
                 f"minus the previous cut, so small stages can read below 0 from noise)\n\n{t5}\n\nWorkers (2 "
                 f"processes share this machine's {cpus} cores)\n\n{t4}\n\n2-worker losses {two[0]['losses']} vs 1 "
                 f"worker {ours['losses']}.")
        return text
    finally:
        if tree is not None:
            remove_tree(tree)
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
    p.add_argument("--reference", default=REFERENCE, help="the commit whose trainer is the reference")
    args = p.parse_args(argv)
    if args.gpu:
        import tensorflow as tf

        if not tf.config.list_physical_devices("GPU"):
            print("bench-gpu: error: TensorFlow sees no GPU on this machine (tf.config.list_physical_devices)",
                  file=sys.stderr)
            return 2
    from ecdctr_pipeline.core.report import markdown_table

    text = bench_training(args.repeat, args.gpu, args.reference)
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
