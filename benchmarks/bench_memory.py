"""make bench-memory: peak RSS of ``ecdctr ingest`` and ``ecdctr score`` at 1x, 4x and 8x their input.

Each command runs as production runs it (``python -m ecdctr_pipeline.app.main ...``) in a process
of its own, under a small parent that reports the child's peak RSS
(``resource.getrusage(RUSAGE_CHILDREN).ru_maxrss``); each size runs ``--repeat`` times and the
table shows medians, with the ratio of 4x and 8x over 1x measured in the same run (the goal of a
streaming command: about flat, 8x within 1.3x of 1x).

* ingest: CSV files of the natural domain written by ``ecdctr simulate --out --format csv``
  (:func:`ecdctr_pipeline.data.simulate.write_files`) at ``--scale`` for ``--days`` days (1x),
  4x and 8x as many days, each ingested into a new store;
* score: ``ecdctr score --model PATH --input rows.parquet`` of ``--score-rows`` random rows in
  the model's serving signature (1x, 4x, 8x). ``--model`` names a SavedModel; without it an
  untrained A-CTR serving model of the tests' tiny settings is exported first (about 10 s:
  scoring's memory does not depend on the weights). ``--skip-score`` leaves it out.
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

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.common import save  # noqa: E402

MULTIPLES = (1, 4, 8)
PEAK = ("import resource, subprocess, sys; r = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, "
        "stderr=subprocess.PIPE, text=True); sys.stderr.write(r.stderr[-3000:] if r.returncode else ''); "
        "print(r.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")


def peak_rss(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Peak RSS (MB) and wall seconds of ``argv`` in a process of its own."""
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-c", PEAK, *argv], cwd=REPO, capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": str(REPO), **env})
    wall = time.perf_counter() - t0
    try:
        rc, kb = r.stdout.split()[-2:]
    except ValueError:
        raise SystemExit(f"bench-memory: {argv[2:4]} printed no peak: {r.stderr[-1500:]}") from None
    if rc != "0":
        raise SystemExit(f"bench-memory: {' '.join(argv[2:])} failed (exit {rc}): {r.stderr[-1500:]}")
    return int(kb) / 1024, wall


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "ecdctr_pipeline.app.main", *args]


def bench_ingest(work: Path, scale: str, days: int, repeat: int) -> list[dict]:
    from ecdctr_pipeline.core.schema import DEFAULT_SCHEMA
    from ecdctr_pipeline.data.simulate import write_files

    start = dt.date(2026, 1, 1)
    out = []
    for k in MULTIPLES:
        end = start + dt.timedelta(days=k * days - 1)
        folder = work / f"logs-{k}x"
        print(f"simulate --out {folder} --format csv: {scale} natural {start} .. {end}", file=sys.stderr)
        summary = write_files(folder, start, end, scale, seed=1, schema=DEFAULT_SCHEMA, domains=("natural",),
                              fmt="csv")
        size = sum(f.stat().st_size for f in (folder / "natural").iterdir())
        runs = []
        for i in range(repeat):
            store = work / f"store-{k}x-{i}"
            now = (end + dt.timedelta(days=1)).isoformat() + "T00:00:00Z"
            runs.append(peak_rss(cli("ingest", "--domain", "natural", "--input", str(folder / "natural"),
                                     "--now", now), {"ECDCTR_STORE": f"file://{store}"}))
            shutil.rmtree(store, ignore_errors=True)
        out.append({"x": k, "rows": summary["natural"]["rows"], "input": f"{size / 2**20:,.0f} MB CSV, {k * days} days",
                    "peak": statistics.median(r[0] for r in runs), "wall": statistics.median(r[1] for r in runs),
                    "runs": [round(r[0]) for r in runs]})
        shutil.rmtree(folder, ignore_errors=True)
    return out


def export_untrained_model(work: Path) -> Path:
    """An untrained A-CTR serving SavedModel of the tests' tiny settings (a child process: this one
    never loads TensorFlow)."""
    code = f"""
import sys
from pathlib import Path
sys.path.insert(0, {str(REPO)!r})
from tests.conftest import tiny_settings
from ecdctr_pipeline.modeling.models import build_complete_model
from ecdctr_pipeline.serving.export import export_saved_model
s = tiny_settings("file://{work / 'model-store'}")
export_saved_model(build_complete_model(s.cpm, s.features, None, name="actr_serving"), s, Path({str(work / 'model')!r}))
"""
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": str(REPO)})
    if r.returncode:
        raise SystemExit(f"bench-memory: exporting a model failed: {r.stderr[-1500:]}")
    return work / "model"


def signature(model: Path) -> dict[str, list]:
    """name -> [dtype, shape] of the model's serving inputs (read in a child process)."""
    code = ("import json, sys; from ecdctr_pipeline.serving.client import LocalScorer; "
            "print(json.dumps(LocalScorer(sys.argv[1]).spec))")
    r = subprocess.run([sys.executable, "-c", code, str(model)], cwd=REPO, capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": str(REPO)})
    if r.returncode:
        raise SystemExit(f"bench-memory: cannot read the signature of {model}: {r.stderr[-1500:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def score_rows(path: Path, spec: dict[str, list], n: int, seed: int = 0) -> Path:
    """``n`` random rows of the signature ``spec`` (values 0 or 1: within every vocabulary)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    cols = {}
    for name, (_, shape) in spec.items():
        if len(shape) == 2:
            width = shape[1] or 1
            flat = rng.integers(0, 2, n * width)
            cols[name] = pa.FixedSizeListArray.from_arrays(pa.array(flat), width)
        else:
            cols[name] = pa.array(rng.integers(0, 2, n))
    pq.write_table(pa.table(cols), path)
    return path


def bench_score(work: Path, model: Path, rows: int, repeat: int) -> list[dict]:
    spec = signature(model)
    out = []
    for k in MULTIPLES:
        path = score_rows(work / f"rows-{k}x.parquet", spec, k * rows)
        runs = [peak_rss(cli("score", "--model", str(model), "--input", str(path)), {}) for _ in range(repeat)]
        out.append({"x": k, "rows": k * rows, "input": f"{path.stat().st_size / 2**20:,.1f} MB Parquet",
                    "peak": statistics.median(r[0] for r in runs), "wall": statistics.median(r[1] for r in runs),
                    "runs": [round(r[0]) for r in runs]})
    return out


def table(name: str, runs: list[dict]) -> list[tuple]:
    base = runs[0]["peak"]
    return [(f"{name} {r['x']}x" + (" (reference)" if r["x"] == 1 else ""), f"{r['rows']:,}", r["input"],
             f"{r['peak']:,.0f}", " / ".join(str(x) for x in r["runs"]), f"{r['peak'] / base:.2f}", f"{r['wall']:.1f}")
            for r in runs]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scale", default="small", help="simulator scale of the ingested log (default small)")
    p.add_argument("--days", type=int, default=30, help="days of the 1x ingest input (4x, 8x: 4 and 8 times)")
    p.add_argument("--repeat", type=int, default=3, help="runs of each size (the table shows medians)")
    p.add_argument("--model", metavar="PATH", help="a SavedModel to score with (default: an untrained one)")
    p.add_argument("--score-rows", type=int, default=10_000, help="rows scored at 1x")
    p.add_argument("--skip-score", action="store_true")
    p.add_argument("--skip-ingest", action="store_true")
    args = p.parse_args(argv)

    from ecdctr_pipeline.core.report import markdown_table

    work = Path(tempfile.mkdtemp(prefix="ecdctr-bench-memory-"))
    try:
        rows: list[tuple] = []
        notes = []
        if not args.skip_ingest:
            ing = bench_ingest(work, args.scale, args.days, args.repeat)
            rows += table("ingest", ing)
            r8 = ing[-1]["peak"] / ing[0]["peak"]
            notes.append(f"ingest: 8x within 1.3x of 1x ({'met' if r8 <= 1.3 else 'NOT met'}: {r8:.2f}x)")
        if not args.skip_score:
            model = Path(args.model) if args.model else None
            if model is None:
                print("exporting an untrained tiny A-CTR serving model", file=sys.stderr)
                model = export_untrained_model(work)
            sc = bench_score(work, model, args.score_rows, args.repeat)
            rows += table("score", sc)
            r8 = sc[-1]["peak"] / sc[0]["peak"]
            notes.append(f"score ({'--model ' + args.model if args.model else 'an untrained tiny model'}): "
                         f"8x within 1.3x of 1x ({'met' if r8 <= 1.3 else 'NOT met'}: {r8:.2f}x)")
        t = markdown_table(("command", "rows", "input", "peak RSS MB (median)", "runs MB", "vs 1x", "median s"), rows)
        text = (f"Peak RSS of one command per process (median of {args.repeat}; ratios against the 1x run of the "
                f"same command in this run; {os.cpu_count()} CPUs)\n\n{t}\n\nGoals: "
                + "; ".join(notes) + ".")
        print(text)
        print(f"\nsaved to {save('memory', text)}", file=sys.stderr)
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
