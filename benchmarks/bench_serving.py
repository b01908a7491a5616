"""make bench-serving: latency and size of the merged serving model vs the unmerged one.

Both are the same A-CTR network exported with the same raw-column ``serving_default``
signature; the unmerged one keeps the 3 monthly tables + self-attention per side, the merged
one does one lookup per side (paper §3.6.2). p50/p99 over repeated calls on CPU.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from benchmarks.common import save  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--users", type=int, default=200_000)
    p.add_argument("--items", type=int, default=50_000)
    p.add_argument("--calls", type=int, default=200)
    args = p.parse_args(argv)

    import numpy as np

    from ecdctr_pipeline.serving import export as serving
    from ecdctr_pipeline.modeling.models import HistoricalTables, build_complete_model
    from ecdctr_pipeline.core.report import markdown_table
    from ecdctr_pipeline.serving.client import LocalScorer
    from ecdctr_pipeline.core.settings import Settings

    s = Settings()
    rng = np.random.default_rng(0)
    d = s.tpm.embedding_dim
    hist = HistoricalTables("bench", ("m1", "m2", "m3"), np.arange(args.users, dtype=np.int64),
                            rng.normal(size=(args.users, 3, d)).astype("float32"),
                            np.arange(args.items, dtype=np.int64), rng.normal(size=(args.items, 3, d)).astype("float32"))
    print(f"building the A-CTR network with {args.users:,} users / {args.items:,} items x 3 months", file=sys.stderr)
    actr = build_complete_model(s.cpm, s.features, hist, name="actr")
    merged = serving.build_serving_model(actr, s)
    work = Path(tempfile.mkdtemp(prefix="ecdctr-bench-serving-"))
    try:
        paths = {"unmerged (3 tables + attention)": serving.export_saved_model(actr, s, work / "unmerged"),
                 "merged (1 table)": serving.export_saved_model(merged, s, work / "merged")}
        scorers = {k: LocalScorer(v) for k, v in paths.items()}
        sizes = {k: sum(f.stat().st_size for f in v.rglob("*") if f.is_file()) for k, v in paths.items()}
        spec = serving.serving_input_spec(s)

        def rows(n):
            out = {}
            for name, (_dt, shape) in spec.items():
                hi = 10 if name.startswith(("user_", "item_", "hist_len")) and name not in ("user_id", "item_id") else 1000
                if name in ("user_id",):
                    hi = int(args.users * 1.1)
                if name in ("item_id",):
                    hi = int(args.items * 1.1)
                out[name] = rng.integers(0, hi, size=(n, *shape[1:])).astype(np.int64)
            return out

        table = []
        for batch in (1, 100, 1000):
            r = rows(batch)
            lat = {}
            for name, scorer in scorers.items():
                for _ in range(10):
                    scorer.predict(r)
                ts = []
                for _ in range(args.calls):
                    t0 = time.perf_counter()
                    scorer.predict(r)
                    ts.append((time.perf_counter() - t0) * 1000)
                lat[name] = (float(np.percentile(ts, 50)), float(np.percentile(ts, 99)))
            um, mm = lat["unmerged (3 tables + attention)"], lat["merged (1 table)"]
            for name in scorers:
                p50, p99 = lat[name]
                ratio = "1.00" if name.startswith("unmerged") else f"{p50 / um[0]:.2f}"
                table.append((batch, name, f"{p50:.3f}", f"{p99:.3f}", ratio))
            _ = mm
        size_rows = [(k, f"{v / 1e6:.1f} MB", "1.00" if k.startswith("unmerged") else
                      f"{v / sizes['unmerged (3 tables + attention)']:.2f}") for k, v in sizes.items()]
        text = (f"Serving latency on CPU (SavedModel signature call, {args.calls} calls per cell, "
                f"{args.users:,} users, {args.items:,} items)\n\n"
                + markdown_table(("batch", "model", "p50 ms", "p99 ms", "p50 ratio vs unmerged"), table)
                + "\n\n" + markdown_table(("model", "SavedModel size", "ratio vs unmerged"), size_rows))
        print(text)
        print(f"\nsaved to {save('serving', text)}", file=sys.stderr)
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
