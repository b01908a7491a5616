"""Fault suite, data correctness of ``ecdctr ingest``: an input never silently replaces a stored
day by a fraction of it (a stray row of a neighbouring day, naive local times past midnight, a
late day's spill-over), ``--days`` declares what an input is, ``--merge`` merges instead of
replacing, replaced days are reported with their counts; a day after ``--now`` cannot be
recorded empty; the local store's files stay 0644/0755 under a umask of 000; and the peak
memory of an ingest does not grow with its input. Every refusal is one line, exit 2, and leaves
the store byte for byte as it was."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pytest

from ecdctr_pipeline.app.main import main
from ecdctr_pipeline.core.settings import StoreSettings
from ecdctr_pipeline.data import delta
from ecdctr_pipeline.data.store import open_store

pytestmark = pytest.mark.faults

REPO = Path(__file__).resolve().parents[2]
NOW = "2026-11-27T12:00:00Z"
COUNT = "ingest: stray, late and corrected days"
D19, D20, D21, D22 = "2026-11-19", "2026-11-20", "2026-11-21", "2026-11-22"


def day_rows(day: str, n: int, *, first_item: int = 0, shift_hours: float = 0.0, zone: str = "Z") -> list[dict]:
    """``n`` impressions spread over ``day`` (UTC), times moved by ``shift_hours`` and written with
    ``zone`` (``""``: naive); item ids from ``first_item`` (distinct rows, distinct keys)."""
    start = dt.datetime.fromisoformat(day) + dt.timedelta(hours=shift_hours)
    step = dt.timedelta(seconds=86_399 / max(n, 1))
    out = []
    for i in range(n):
        t = start + i * step
        out.append({"event_time": t.strftime("%Y-%m-%dT%H:%M:%S.%f") + zone, "user_id": str(i % 11),
                    "item_id": str(first_item + i), "category_id": "1", "click": str(i % 2), "user_age": "2",
                    "user_gender": "1", "user_city": "5", "item_brand": "7", "item_price": "3",
                    "hour": str(t.hour), "weekday": "4", "position": "0", "device": "1"})
    return out


def write_csv(path: Path, records: list[dict]) -> Path:
    pcsv.write_csv(pa.table({c: [r[c] for r in records] for c in records[0]}), path)
    return path


def _tree(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_size for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def env(tmp_path, monkeypatch):
    root = tmp_path / "store"
    monkeypatch.setenv("ECDCTR_STORE", f"file://{root}")
    return root, open_store(StoreSettings(root=f"file://{root}"))


def ingest(capsys, path: Path, *extra: str, domain: str = "ad") -> tuple[int, str, str]:
    rc = main(["ingest", "--domain", domain, "--input", str(path), "--now", NOW, *extra])
    out = capsys.readouterr()
    return rc, out.out, out.err


def refused(capsys, root: Path, path: Path, *extra: str, words: tuple[str, ...]) -> str:
    """The ingest is refused in one line naming ``words``, and the store is unchanged."""
    before = _tree(root)
    rc, out, err = ingest(capsys, path, *extra)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert rc == 2 and len(lines) == 1 and lines[0].startswith("ecdctr: error: "), (rc, out, err)
    assert len(lines[0]) <= 400, lines[0]
    for w in words:
        assert w in lines[0], (w, lines[0])
    assert _tree(root) == before
    return lines[0]


def rows_of(store, day: str) -> int:
    return delta.read(store, "raw/ad", partitions=[day])[0].num_rows


def test_a_stray_row_of_a_stored_day_is_refused_with_the_counts(tmp_path, env, capsys, fault_counts):
    """169 rows of 11-20 are stored; a file of 11-21 holding one stray row of 11-20 (its first
    line) used to replace 11-20 by that row (169 -> 1, exit 0, no warning)."""
    root, store = env
    assert ingest(capsys, write_csv(tmp_path / "d20.csv", day_rows(D20, 169)))[0] == 0
    stray = day_rows(D20, 1, first_item=10_000, shift_hours=23.9) + day_rows(D21, 171)
    line = refused(capsys, root, write_csv(tmp_path / "d21.csv", stray),
                   words=(D20, "1 row(s)", "169 rows", "d21.csv:2", "--days", "--merge"))
    assert "172" not in line
    assert rows_of(store, D20) == 169 and delta.partitions(store, "raw/ad") == [D20]
    fault_counts[COUNT] = fault_counts.get(COUNT, 0) + 1


def test_naive_local_times_past_midnight_do_not_replace_the_next_day(tmp_path, env, capsys, fault_counts):
    """11-21 is stored; the file of 11-20 was exported in local time (UTC-5) without an offset:
    read as UTC its last five hours fall on 11-21, which they used to replace."""
    root, store = env
    assert ingest(capsys, write_csv(tmp_path / "d21.csv", day_rows(D21, 169)))[0] == 0
    local = day_rows(D20, 169, first_item=5000, shift_hours=5, zone="")
    spill = sum(r["event_time"].startswith(D21) for r in local)
    assert 0 < spill < 169
    path = write_csv(tmp_path / "d20-local.csv", local)
    refused(capsys, root, path, words=(D21, f"{spill} row(s)", "169 rows", "--days"))
    # declaring the day the file is: its rows outside it are named, first one first
    first_out = next(i for i, r in enumerate(local) if r["event_time"].startswith(D21)) + 2
    refused(capsys, root, path, "--days", D20, words=(f"d20-local.csv:{first_out}", D21, "outside --days", "--merge"))
    assert rows_of(store, D21) == 169 and delta.partitions(store, "raw/ad") == [D21]
    fault_counts[COUNT] = fault_counts.get(COUNT, 0) + 2


def test_days_declares_the_input_and_refuses_rows_outside(tmp_path, env, capsys, fault_counts):
    root, store = env
    two = day_rows(D20, 50) + day_rows(D21, 60, first_item=100)
    assert ingest(capsys, write_csv(tmp_path / "two.csv", two))[0] == 0
    both = write_csv(tmp_path / "both.csv", day_rows(D20, 40) + day_rows(D21, 30, first_item=100))
    refused(capsys, root, both, "--days", D20, words=("both.csv:42", D21, f"outside --days {D20}",
                                                    "30 row(s) of 1 day(s)"))
    # the first row outside in the input's order (line 42 before line 102)
    three = write_csv(tmp_path / "three.csv", day_rows(D20, 40) + day_rows(D21, 60, first_item=100)
                      + day_rows(D22, 10, first_item=300))
    refused(capsys, root, three, "--days", D20, words=("three.csv:42 is of 2026-11-21", "70 row(s) of 2 day(s)"))
    refused(capsys, root, both, "--days", f"{D20}..{D22}", words=(f"--days names {D22}", "no rows", "--empty-day"))
    refused(capsys, root, both, "--days", f"{D21}..{D20}", words=("before",))
    refused(capsys, root, both, "--days", "2026-11-31", words=("2026-11-31",))
    # declared, both days are replaced whatever their counts (a corrected export with fewer rows)
    rc, out, _ = ingest(capsys, both, "--days", f"{D20},{D21}")
    assert rc == 0 and f"raw/ad {D20}: 50 rows replaced by 40" in out and f"raw/ad {D21}: 60 rows replaced by 30" in out
    assert (rows_of(store, D20), rows_of(store, D21)) == (40, 30)
    fault_counts[COUNT] = fault_counts.get(COUNT, 0) + 6


def test_merge_merges_rows_into_the_stored_day_by_impression_key(tmp_path, env, capsys, fault_counts):
    root, store = env
    stored = day_rows(D20, 169)
    assert ingest(capsys, write_csv(tmp_path / "d20.csv", stored))[0] == 0
    # a late row of 11-20 (new key) and a corrected one (the key of a stored row, other click)
    corrected = dict(stored[7], click="1" if stored[7]["click"] == "0" else "0")
    extra = day_rows(D20, 1, first_item=9_000, shift_hours=23.5)
    path = write_csv(tmp_path / "d21.csv", extra + [corrected] + day_rows(D21, 171, first_item=20_000))
    refused(capsys, root, path, words=(D20, "2 row(s)", "169 rows"))
    rc, out, _ = ingest(capsys, path, "--merge", "--json")
    data = json.loads(out)
    assert rc == 0 and data["replaced"] == {D20: {"stored": 169, "rows": 170, "action": "merged"}}, data
    assert {d["day"]: d["action"] for d in data["days"]} == {D20: "merged", D21: "added"}
    got = delta.read(store, "raw/ad", partitions=[D20])[0]
    assert got.num_rows == 170 and len(set(zip(got["user_id"].to_pylist(), got["item_id"].to_pylist(),
                                                 got["event_time"].to_pylist()))) == 170
    row = got.filter(pc.equal(got["item_id"], int(corrected["item_id"])))
    assert row["click"].to_pylist() == [int(corrected["click"])]  # the input's row wins
    # with --days: the declared day is replaced, the others merged; text lines name both
    again = write_csv(tmp_path / "again.csv",
                      day_rows(D20, 1, first_item=30_000) + day_rows(D21, 150, first_item=40_000))
    rc, out, _ = ingest(capsys, again, "--days", D21, "--merge")
    assert rc == 0 and f"raw/ad {D20}: 170 rows merged with 1 input rows: 171 now" in out
    assert f"raw/ad {D21}: 171 rows replaced by 150" in out
    assert (rows_of(store, D20), rows_of(store, D21)) == (171, 150)
    fault_counts[COUNT] = fault_counts.get(COUNT, 0) + 3


def test_a_corrected_day_reingested_whole_is_replaced_with_its_count_line(tmp_path, env, capsys, fault_counts):
    root, store = env
    assert ingest(capsys, write_csv(tmp_path / "d20.csv", day_rows(D20, 169)))[0] == 0
    rc, out, _ = ingest(capsys, write_csv(tmp_path / "fixed.csv", day_rows(D20, 171, first_item=500)))
    assert rc == 0 and out.splitlines()[0] == f"raw/ad {D20}: 169 rows replaced by 171", out
    assert "1 replaced" in out.splitlines()[-1] and rows_of(store, D20) == 171
    rc, out, _ = ingest(capsys, tmp_path / "fixed.csv", "--json")  # a retry: the same rows again
    assert rc == 0 and json.loads(out)["replaced"] == {D20: {"stored": 171, "rows": 171, "action": "replaced"}}
    # a corrected day with fewer rows needs its declaration
    fewer = write_csv(tmp_path / "fewer.csv", day_rows(D20, 160, first_item=500))
    refused(capsys, root, fewer, words=(D20, "160 row(s)", "171 rows", f"--days {D20}"))
    rc, out, _ = ingest(capsys, fewer, "--days", D20)
    assert rc == 0 and f"raw/ad {D20}: 171 rows replaced by 160" in out and rows_of(store, D20) == 160
    fault_counts[COUNT] = fault_counts.get(COUNT, 0) + 3


def test_a_late_day_is_added_and_its_spill_over_refused(tmp_path, env, capsys, fault_counts):
    """11-19 and 11-21 are stored; 11-20 arrives late. Its file, cut at local midnight, holds the
    first minutes of 11-21: refused (it used to replace 11-21 by them); the day alone is added."""
    root, store = env
    stored = day_rows(D19, 120) + day_rows(D21, 130, first_item=1000)
    assert ingest(capsys, write_csv(tmp_path / "a.csv", stored))[0] == 0
    late = day_rows(D20, 140, first_item=2000) + day_rows(D21, 3, first_item=3000)
    path = write_csv(tmp_path / "late.csv", late)
    refused(capsys, root, path, words=(D21, "3 row(s)", "130 rows", "late.csv:142"))
    rc, out, _ = ingest(capsys, write_csv(tmp_path / "late-day.csv", late[:140]), "--json")
    data = json.loads(out)
    assert rc == 0 and data["replaced"] == {} and data["days"] == [
        {"day": D20, "rows": 140, "stored": None, "after": 140, "action": "added"}]
    assert [rows_of(store, d) for d in (D19, D20, D21)] == [120, 140, 130]
    fault_counts[COUNT] = fault_counts.get(COUNT, 0) + 2


def test_an_empty_day_after_now_is_refused(env, capsys, fault_counts):
    root, store = env
    for day, now in (("2026-11-28", NOW), ("2026-11-21", "2026-11-20T23:59:59Z")):
        assert main(["ingest", "--domain", "ad", "--empty-day", day, "--now", now]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"ecdctr: error: --empty-day {day} is in the future") and "\n" not in err, err
    assert not root.exists() or not any(root.rglob("*.json"))
    assert main(["ingest", "--domain", "ad", "--empty-day", "2026-11-20", "--now", "2026-11-20T00:00:01Z"]) == 0
    capsys.readouterr()
    fault_counts[COUNT] = fault_counts.get(COUNT, 0) + 2


UMASK_RUN = """
import os, sys
os.umask(0)
from ecdctr_pipeline.app.main import main
for argv in (["ingest", "--domain", "ad", "--input", sys.argv[1], "--now", "2026-11-27T12:00:00Z"],
             ["ingest", "--domain", "ad", "--input", sys.argv[2], "--now", "2026-11-27T12:00:00Z"],
             ["ingest", "--domain", "ad", "--empty-day", "2026-11-25", "--now", "2026-11-27T12:00:00Z"],
             ["simulate", "--start", "2026-11-01", "--end", "2026-11-02", "--scale", "tiny", "--domain", "natural"]):
    rc = main(argv)
    if rc:
        sys.exit(rc)
"""


def test_store_files_are_0644_and_folders_0755_under_umask_000(tmp_path, fault_counts):
    """ingest (a new table, then a replaced day: delta-rs's commits, the writer lease), an
    empty-day record and the simulator (write_deltalake) in a process whose umask is 000."""
    root = tmp_path / "store"
    first = write_csv(tmp_path / "a.csv", day_rows(D20, 50))
    second = write_csv(tmp_path / "b.csv", day_rows(D20, 60, first_item=100) + day_rows(D21, 10, first_item=500))
    r = subprocess.run([sys.executable, "-c", UMASK_RUN, str(first), str(second)], cwd=REPO, capture_output=True,
                       text=True, timeout=300, env={**os.environ, "ECDCTR_STORE": f"file://{root}",
                                                    "PYTHONPATH": str(REPO)})
    assert r.returncode == 0, r.stderr[-2000:]
    entries = [root, *root.rglob("*")]
    wide = [f"{oct(p.stat().st_mode & 0o777)} {p.relative_to(tmp_path)}" for p in entries
            if p.stat().st_mode & 0o777 & ~(0o755 if p.is_dir() else 0o644)]
    assert not wide, wide[:10]
    kinds = {p.relative_to(root).parts[0] for p in entries if p != root}
    assert {"raw", "empty_days"} <= kinds, kinds
    assert any(p.suffix == ".parquet" for p in (root / "raw" / "natural").rglob("*"))
    fault_counts["ingest: store files checked under umask 000"] = len(entries)


PEAK = ("import resource, subprocess, sys; r = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
        "sys.stderr.write(r.stderr[-2000:]); "
        "print(r.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")


def synthetic_csv(path: Path, rows: int, *, start: str = "2026-06-01", rows_per_day: int = 10_000,
                  seed: int = 0) -> Path:
    """``rows`` valid impressions (the default schema), ``rows_per_day`` a day from ``start``,
    every impression key distinct."""
    rng = np.random.default_rng(seed)
    step_us = 86_400_000_000 // rows_per_day
    t0 = int(dt.datetime.fromisoformat(start).replace(tzinfo=dt.timezone.utc).timestamp() * 1_000_000)
    ts = pa.array(t0 + np.arange(rows, dtype=np.int64) * step_us, pa.timestamp("us", tz="UTC"))
    sizes = {"user_id": 50_000, "category_id": 30, "click": 2, "user_age": 8, "user_gender": 3, "user_city": 64,
             "item_brand": 500, "item_price": 10, "hour": 24, "weekday": 7, "position": 20, "device": 4}
    ints = {c: rng.integers(0, k, rows) for c, k in sizes.items()}
    ints = {"user_id": ints.pop("user_id"), "item_id": np.arange(rows), **ints}
    table = pa.table({"event_time": pc.strftime(ts, format="%Y-%m-%dT%H:%M:%SZ"), **ints})
    pcsv.write_csv(table, path)
    return path


def peak_rss_mb(argv: list[str], env: dict) -> float:
    """Peak RSS (MB) of the command ``argv``, run in a process of its own."""
    r = subprocess.run([sys.executable, "-c", PEAK, *argv], cwd=REPO, capture_output=True, text=True, timeout=600,
                       env={**os.environ, "PYTHONPATH": str(REPO), **env})
    rc, kb = r.stdout.split()[-2:]
    assert rc == "0", r.stderr[-2000:]
    return int(kb) / 1024


def test_ingest_peak_memory_does_not_grow_with_the_input(tmp_path, fault_counts):
    """Not timed: peak RSS of ingesting N and 8N rows (each its own process and store). The whole
    input used to be held, converted and written at once (N = 80 000: ~310 MB, 8N: ~800 MB)."""
    n = 80_000
    peaks = {}
    for k in (1, 8):
        path = synthetic_csv(tmp_path / f"in-{k}.csv", k * n)
        argv = [sys.executable, "-m", "ecdctr_pipeline.app.main", "ingest", "--domain", "natural", "--input", str(path),
                "--now", "2027-01-01T00:00:00Z"]
        peaks[k] = peak_rss_mb(argv, {"ECDCTR_STORE": f"file://{tmp_path / f'store-{k}'}"})
        store = open_store(StoreSettings(root=f"file://{tmp_path / f'store-{k}'}"))
        assert delta.read(store, "raw/natural", columns=["item_id"])[0].num_rows == k * n
    assert peaks[8] < 1.5 * peaks[1], peaks
    fault_counts["ingest: peak RSS at 8x the input over 1x (x100)"] = round(100 * peaks[8] / peaks[1])


def test_ingest_on_s3_refuses_a_stray_row_and_merges(s3_store_settings, tmp_path, capsys, monkeypatch, fault_counts):
    """The same rule on an S3 store (staged files are uploaded, then committed in one commit)."""
    from ecdctr_pipeline.data import ingest as ing
    from ecdctr_pipeline.core.schema import DEFAULT_SCHEMA

    store = open_store(s3_store_settings)
    now = dt.datetime.fromisoformat(NOW.replace("Z", "+00:00"))
    r = ing.ingest(store, "ad", write_csv(tmp_path / "d20.csv", day_rows(D20, 169)), now=now, schema=DEFAULT_SCHEMA)
    assert r.version == 1
    stray = write_csv(tmp_path / "d21.csv", day_rows(D20, 1, first_item=10_000, shift_hours=23.9) + day_rows(D21, 171))
    keys = sorted(store.list("raw/ad"))
    with pytest.raises(ing.IngestError, match=f"1 row\\(s\\) of {D20}.*stores with 169 rows"):
        ing.ingest(store, "ad", stray, now=now, schema=DEFAULT_SCHEMA)
    assert sorted(store.list("raw/ad")) == keys
    r = ing.ingest(store, "ad", stray, now=now, schema=DEFAULT_SCHEMA, merge=True)
    assert r.lines() == [f"raw/ad {D20}: 169 rows merged with 1 input rows: 170 now"] and r.version == 2
    assert delta.day_rows(store, "raw/ad")[0] == {D20: 170, D21: 171}
    fault_counts[COUNT] = fault_counts.get(COUNT, 0) + 1
