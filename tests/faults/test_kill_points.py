"""Fault suite, kill -9: every store mutation of a command is a kill point
(:mod:`tests.faults.killer`). After each kill the previous artifact or table version still loads
whole, and a rerun of the same command finishes the job and leaves nothing behind; concurrent
writers of one artifact or table end with one complete result and a clear message for a loser."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ecdctr_pipeline.core import paths
from ecdctr_pipeline.core.settings import StoreSettings
from ecdctr_pipeline.data import artifacts, delta
from ecdctr_pipeline.data.store import open_store
from tests.faults.killer import tables

pytestmark = pytest.mark.faults

REPO = Path(__file__).resolve().parents[2]
PREFIX = paths.tpm_set("2026-10")


def _settings_json(s: StoreSettings) -> str:
    data = json.loads(s.model_dump_json())
    for k in ("access_key_id", "secret_access_key"):
        if getattr(s, k) is not None:
            data[k] = getattr(s, k).get_secret_value()
    return json.dumps(data)


def run(kill_at: int, *args: str, env: dict | None = None, wait: bool = True):
    cmd = [sys.executable, "-m", "tests.faults.killer", str(kill_at), *args]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})})
    if not wait:
        return proc
    out, err = proc.communicate(timeout=300)
    return proc.returncode, out, err


def mutations(err: str, what: str = "mutations") -> list[str]:
    line = next(ln for ln in err.splitlines() if ln.startswith(f"{what}: "))
    return json.loads(line[len(what) + 2:])


def whole_tag(store) -> str:
    """The live artifact's tag, after loading every file it lists (size and SHA-256 verified)."""
    m = artifacts.read_manifest(store, PREFIX)
    tag = m.extra["tag"]
    for f in m.files:
        assert artifacts.load_bytes(store, PREFIX, f.name, m) == tables(tag)[f.name], (tag, f.name)
    return tag


@pytest.mark.parametrize("backend", ["local", "s3"])
def test_publish_killed_at_every_mutation_keeps_the_previous_artifact(backend, request, tmp_path, fault_counts):
    """The publishing path of every trainer and of export, killed before each of its mutations
    (lease, each file, the manifest, the clean-up of the replaced attempt, the lease release)."""
    settings = (request.getfixturevalue("s3_store_settings") if backend == "s3"
                else StoreSettings(root=f"file://{tmp_path / 'store'}"))
    cfg, store = _settings_json(settings), open_store(settings)
    assert run(0, "publish", cfg, PREFIX, "v1")[0] == 0
    rc, _, err = run(0, "publish", cfg, PREFIX, "v2")
    steps = mutations(err)
    assert rc == 0 and whole_tag(store) == "v2"
    assert steps[-3].endswith(f"{PREFIX}/MANIFEST.json")  # then the clean-up and the lease release
    live = "v2"
    for n in range(1, len(steps) + 1):
        rc, _, err = run(n, "publish", cfg, PREFIX, f"k{n}")
        assert rc == -9, n
        done = mutations(err, "killed")[:-1]
        tag = whole_tag(store)  # never a torn artifact
        if not any(m.endswith(f"{PREFIX}/MANIFEST.json") for m in done):  # killed before its manifest
            assert tag == live, (n, done, tag)
        else:  # killed after it: the new one is live, whole
            assert tag == f"k{n}", (n, done, tag)
            live = tag
    rc, _, err = run(0, "publish", cfg, PREFIX, "final")  # the rerun takes over the dead holder's lease
    assert rc == 0, err[-2000:]
    assert whole_tag(store) == "final"
    m = artifacts.read_manifest(store, PREFIX)
    assert set(store.iter_children(PREFIX)) == {m.attempt, "MANIFEST.json"}  # every killed attempt collected
    assert not store.exists(paths.writer_lease(PREFIX))
    if backend == "local":
        leftovers = [p for p in (tmp_path / "store").rglob(".*tmp-*")]
        assert leftovers == []
    fault_counts[f"kill points: publish ({backend} store)"] = len(steps)


def _raw_day(tmp_path: Path, day: str, name: str) -> Path:
    from ecdctr_pipeline.core.schema import DEFAULT_SCHEMA
    from ecdctr_pipeline.data.simulate import World, get_scale
    import datetime as dt
    import pyarrow.parquet as pq

    t = World(get_scale("tiny"), 4, DEFAULT_SCHEMA).day("ad", dt.date.fromisoformat(day))
    out = tmp_path / name
    pq.write_table(t, out)
    return out


@pytest.mark.slow
def test_ingest_and_extraction_killed_at_every_commit(tmp_path, fault_counts):
    """A new raw table (its first commit, then its feature-schema record), a day added to it, and
    a forced re-extraction, each killed before every Delta commit: the table stays readable at its
    previous version, and the rerun gives the rows of an uninterrupted run."""
    import datetime as dt

    from ecdctr_pipeline.data.simulate import simulate

    root = tmp_path / "store"
    env = {"ECDCTR_STORE": f"file://{root}", "ECDCTR_FEATURES__ENGINE": "duckdb"}
    store = open_store(StoreSettings(root=f"file://{root}"))
    first = _raw_day(tmp_path, "2026-11-20", "first.parquet")
    ingest = ["cli", "ingest", "--domain", "ad", "--now", "2026-11-25T00:00:00Z", "--input"]
    points = 0

    # a new table: killed before its first commit, then between it and the schema record
    rc, _, err = run(0, *ingest, str(first), env={**env, "ECDCTR_STORE": f"file://{tmp_path / 'count'}"})
    steps = mutations(err)
    lease = f"leases/{paths.raw_table('ad')}.json"
    # ingest stages its data files, then commits them (create_table_with_add_actions: a new table)
    assert rc == 0 and steps == [f"LocalStore.put_if_absent {lease}",
                                 "deltalake.transaction.create_table_with_add_actions",
                                 "TableAlterer.set_table_properties", f"LocalStore.delete {lease}"], steps
    assert run(1, *ingest, str(first), env=env)[0] == -9  # before the writer lease
    assert not delta.exists(store, "raw/ad")
    assert run(2, *ingest, str(first), env=env)[0] == -9  # holding the lease, before the first commit
    assert not delta.exists(store, "raw/ad") and store.exists(lease)
    # the killed holder's lease is taken over at once (a failed create, the delete of the dead
    # holder's lease, the create: three mutations before the commit)
    rc, _, err = run(5, *ingest, str(first), env=env)
    assert rc == -9 and mutations(err, "killed")[-1] == "TableAlterer.set_table_properties", err[-800:]
    assert delta.recorded_schema(store, "raw/ad") is None and delta.version(store, "raw/ad") == 0
    rc, _, err = run(6, *ingest, str(first), env=env)  # committed, recorded, the lease left behind
    assert rc == -9 and mutations(err, "killed")[-1] == f"LocalStore.delete {lease}", err[-800:]
    rc, _, err = run(0, *ingest, str(first), env=env)  # the rerun replaces the day and records the schema
    assert rc == 0, err[-2000:]
    assert delta.recorded_schema(store, "raw/ad") is not None and not store.exists(lease)
    assert delta.read(store, "raw/ad")[0].num_rows == _rows(first)
    points += 4

    # a day added to an existing table
    second = _raw_day(tmp_path, "2026-11-21", "second.parquet")
    version = delta.version(store, "raw/ad")
    assert run(2, *ingest, str(second), env=env)[0] == -9  # before its commit
    assert delta.version(store, "raw/ad") == version and delta.partitions(store, "raw/ad") == ["2026-11-20"]
    assert run(0, *ingest, str(second), env=env)[0] == 0
    assert delta.partitions(store, "raw/ad") == ["2026-11-20", "2026-11-21"]
    points += 1

    # a forced re-extraction (the DuckDB engine's delta-rs commit)
    simulate(store, dt.date(2026, 10, 20), dt.date(2026, 11, 24), "tiny", seed=4, domains=("ad",), progress=False)
    extract = ["cli", "extract", "complete", "--domain", "ad", "--as-of", "2026-11-24"]
    assert run(0, *extract, env=env)[0] == 0
    table = paths.complete_features("ad")
    want = delta.read(store, table)[0].sort_by([("event_time", "ascending"), ("user_id", "ascending")])
    version = delta.version(store, table)
    rc, _, err = run(0, *extract, "--force", env=env)
    steps = mutations(err)
    for n in range(1, len(steps) + 1):
        assert run(n, *extract, "--force", env=env)[0] == -9
        assert delta.read(store, table)[0].num_rows == want.num_rows  # readable, no torn commit
    assert run(0, *extract, "--force", env=env)[0] == 0
    got = delta.read(store, table)[0].sort_by([("event_time", "ascending"), ("user_id", "ascending")])
    assert got.equals(want) and delta.version(store, table) > version
    points += len(steps)
    fault_counts["kill points: ingest (new table, new day) and forced extraction"] = points


def _rows(path: Path) -> int:
    import pyarrow.parquet as pq

    return pq.read_metadata(path).num_rows


def test_concurrent_publishers_and_extractions(tmp_path, fault_counts):
    """Two publishers of one artifact (uploads slowed to 0.25 s a file, so they overlap) started
    0, 0.3 and 0.6 s apart: each pair ends with one complete artifact (one of theirs) and, for a
    loser, exit 2 and one line naming the holder. Two forced extractions of one window at once: the table holds each feature row
    once (never both writers' rows)."""
    import time

    settings = StoreSettings(root=f"file://{tmp_path / 'store'}")
    cfg, store = _settings_json(settings), open_store(settings)
    assert run(0, "publish", cfg, PREFIX, "base")[0] == 0
    losers = 0
    slow = {"KILLER_FILE_DELAY_S": "0.25"}
    gaps = (0.0, 0.3, 0.6)
    for i, gap in enumerate(gaps):
        a = run(0, "publish", cfg, PREFIX, f"a{i}", wait=False, env=slow)
        time.sleep(gap)
        b = run(0, "publish", cfg, PREFIX, f"b{i}", wait=False, env=slow)
        results = {}
        for tag, proc in (("a", a), ("b", b)):
            out, err = proc.communicate(timeout=120)
            results[tag] = (proc.returncode, err)
        winners = [t for t, (rc, _) in results.items() if rc == 0]
        assert winners, results
        assert whole_tag(store) in {f"{t}{i}" for t in winners}
        for t, (rc, err) in results.items():
            if rc != 0:
                losers += 1
                errs = [ln for ln in err.splitlines() if ln.startswith("ecdctr: error: ")]
                assert rc == 2 and len(errs) == 1 and "is being published by" in errs[0], err[-800:]
        m = artifacts.read_manifest(store, PREFIX)
        assert set(store.iter_children(PREFIX)) == {m.attempt, "MANIFEST.json"}
    assert losers >= 1  # the uploads overlapped at least once: the lease decided

    import datetime as dt

    from ecdctr_pipeline.data.simulate import simulate

    root = tmp_path / "x"
    env = {"ECDCTR_STORE": f"file://{root}", "ECDCTR_FEATURES__ENGINE": "duckdb"}
    xstore = open_store(StoreSettings(root=f"file://{root}"))
    simulate(xstore, dt.date(2026, 10, 20), dt.date(2026, 11, 24), "tiny", seed=4, domains=("ad",), progress=False)
    extract = ["cli", "extract", "complete", "--domain", "ad", "--as-of", "2026-11-24", "--force"]
    procs = [run(0, *extract, env=env, wait=False) for _ in range(2)]
    errs = [p.communicate(timeout=300)[1] for p in procs]
    outcomes = [(p.returncode, err) for p, err in zip(procs, errs)]
    assert any(rc == 0 for rc, _ in outcomes), outcomes
    for rc, err in outcomes:
        if rc != 0:
            errs = [ln for ln in err.splitlines() if ln.startswith("ecdctr: error: ")]
            assert len(errs) == 1 and "Traceback" not in err, err[-1500:]
    table = delta.read(xstore, paths.complete_features("ad"))[0]
    keys = table.select(["user_id", "item_id", "event_time"])
    assert keys.group_by(["user_id", "item_id", "event_time"]).aggregate([]).num_rows == table.num_rows
    window_days = {d for d in table["dt"].unique().to_pylist()}
    raw = delta.read(xstore, "raw/ad", partitions=sorted(window_days))[0]
    assert table.num_rows == raw.num_rows  # one feature row per impression of the window
    fault_counts["concurrent scenarios"] = len(gaps) + 1
    fault_counts["concurrent forced extractions that landed (of 2)"] = sum(rc == 0 for rc, _ in outcomes)
    fault_counts["concurrent publishers that lost (one line, nothing lost)"] = losers
