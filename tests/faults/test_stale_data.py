"""Fault suite, stale and duplicated data: the defects an independent probe found (issue 28).

* A forced extraction must never hide a later raw change: the skip decision compares the raw
  version(s) a run reads with those the window's commit recorded (both engines).
* Two first writes of one table (two extractions, two ingests) held at the commit point by a
  barrier (:mod:`tests.faults.killer`), in both orders: every row once.
* A corrected raw day reaches the served model: ``status`` and the sensors name the change, the
  next run of the day retrains once the features are re-extracted, and export serves it, with
  lineage naming both versions.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from ecdctr_pipeline.core import paths
from ecdctr_pipeline.core.settings import Settings
from ecdctr_pipeline.data import delta, extract
from ecdctr_pipeline.data.simulate import simulate
from ecdctr_pipeline.data.store import open_store

pytestmark = pytest.mark.faults

REPO = Path(__file__).resolve().parents[2]
DAY = "2026-11-20"  # a day inside the A-CTR window of 2026-11-24
NOW = "2026-11-25T00:00:00Z"


def _corrected_day(store, tmp_path: Path, day: str = DAY) -> tuple[Path, int, int]:
    """The raw ad day with every click flipped, as a file to ingest: (path, rows, clicks)."""
    raw, _ = delta.read(store, "raw/ad", partitions=[day])
    raw = raw.drop_columns(["dt"])
    flipped = raw.set_column(raw.schema.get_field_index("click"), "click",
                             pc.cast(pc.subtract(pa.scalar(1, pa.int8()), pc.cast(raw["click"], pa.int8())),
                                     raw.schema.field("click").type))
    out = tmp_path / f"corrected-{day}.parquet"
    pq.write_table(flipped, out)
    return out, flipped.num_rows, int(pc.sum(flipped["click"]).as_py())


def _ingest(monkeypatch, root: Path, path: Path, engine: str = "duckdb") -> None:
    from ecdctr_pipeline.app.main import main

    monkeypatch.setenv("ECDCTR_STORE", f"file://{root}")
    monkeypatch.setenv("ECDCTR_FEATURES__ENGINE", engine)
    assert main(["ingest", "--domain", "ad", "--now", NOW, "--input", str(path)]) == 0


def _day_counts(store, table: str, day: str) -> tuple[int, int]:
    t, _ = delta.read(store, table, partitions=[day], columns=["click"])
    return t.num_rows, int(pc.sum(t["click"]).as_py() or 0)


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["duckdb", "spark"])
def test_forced_extraction_never_hides_a_later_raw_change(engine, tmp_path, monkeypatch, request, fault_counts):
    spark = request.getfixturevalue("spark") if engine == "spark" else None
    root = tmp_path / "store"
    s = Settings.model_validate({"store": {"root": f"file://{root}"}, "features": {"engine": engine}})
    store = open_store(s.store)
    simulate(store, dt.date(2026, 10, 20), dt.date(2026, 11, 24), "tiny", seed=4, domains=("ad",), progress=False)
    table = paths.complete_features("ad")
    first = extract.extract_complete(s, store, "ad", "2026-11-24", spark=spark)
    assert not first.skipped
    assert extract.extract_complete(s, store, "ad", "2026-11-24", spark=spark).skipped  # unchanged raw: nothing
    forced = extract.extract_complete(s, store, "ad", "2026-11-24", force=True, spark=spark)
    assert not forced.skipped and forced.version > first.version
    path, rows, clicks = _corrected_day(store, tmp_path)
    assert _day_counts(store, table, DAY) != (rows, clicks)
    _ingest(monkeypatch, root, path, engine)
    again = extract.extract_complete(s, store, "ad", "2026-11-24", spark=spark)  # what the DAG runs
    assert not again.skipped, "a forced extraction hid the corrected day"
    assert again.raw_version == delta.version(store, "raw/ad")
    assert _day_counts(store, table, DAY) == (rows, clicks)
    assert extract.extract_complete(s, store, "ad", "2026-11-24", spark=spark).skipped
    fault_counts[f"stale features: forced, then corrected day ({engine})"] = 1


def _killer(*args: str, env: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "tests.faults.killer", "0", "cli", *args], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO), **env})


def _unique_keys(t: pa.Table) -> int:
    return t.select(["user_id", "item_id", "event_time"]).group_by(["user_id", "item_id", "event_time"]) \
        .aggregate([]).num_rows


SCENARIOS = {
    # name: (argv of writer A, argv of writer B)
    "one window twice": (["extract", "complete", "--domain", "ad", "--as-of", "2026-11-24"],
                         ["extract", "complete", "--domain", "ad", "--as-of", "2026-11-24"]),
    "one window, normal and forced": (["extract", "complete", "--domain", "ad", "--as-of", "2026-11-24"],
                                      ["extract", "complete", "--domain", "ad", "--as-of", "2026-11-24", "--force"]),
    "two overlapping windows": (["extract", "complete", "--domain", "ad", "--as-of", "2026-11-24"],
                                ["extract", "complete", "--domain", "ad", "--as-of", "2026-11-23"]),
    "the TPM months twice": (["extract", "tpm", "--as-of", "2026-10"], ["extract", "tpm", "--as-of", "2026-10"]),
    "one natural window twice": (["extract", "complete", "--domain", "natural", "--as-of", "2026-11-23"],
                                 ["extract", "complete", "--domain", "natural", "--as-of", "2026-11-23"]),
    "one ingest twice": (["ingest", "--domain", "ad", "--now", NOW, "--input", "{day}"],
                         ["ingest", "--domain", "ad", "--now", NOW, "--input", "{day}"]),
}


@pytest.fixture(scope="module")
def raw_ad_store(tmp_path_factory):
    """Raw natural 2026-04-01 .. 2026-11-24 and ad 2026-10-20 .. 2026-11-24, no feature table yet."""
    root = tmp_path_factory.mktemp("raw-ad") / "store"
    store = open_store(Settings.model_validate({"store": {"root": f"file://{root}"}}).store)
    simulate(store, dt.date(2026, 10, 20), dt.date(2026, 11, 24), "tiny", seed=4, domains=("ad",), progress=False)
    simulate(store, dt.date(2026, 4, 1), dt.date(2026, 11, 24), "tiny", seed=4, domains=("natural",), progress=False)
    day = root.parent / "day.parquet"
    pq.write_table(delta.read(store, "raw/ad", partitions=[DAY])[0].drop_columns(["dt"]), day)
    return root, day


@pytest.mark.parametrize("first", ["A", "B"])
@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_two_first_writes_of_one_table_held_at_the_commit_point(scenario, first, raw_ad_store, tmp_path,
                                                                fault_counts):
    """Both writers reach their first write of a table that does not exist yet at the same moment
    (a barrier), ``first`` goes 0.5 s ahead, and each waits at its commit for the other (without a
    lock both commit there: every row twice). Both exit 0 (the second waits for the writer lease,
    then finds the first one's commit), and the table holds every row once."""
    src, day = raw_ad_store
    root = tmp_path / "store"
    ingest = scenario.startswith("one ingest")
    if ingest:
        root.mkdir()
    else:
        shutil.copytree(src, root)
    env = {"ECDCTR_STORE": f"file://{root}", "ECDCTR_FEATURES__ENGINE": "duckdb",
           "KILLER_BARRIER_DIR": str(tmp_path / "barrier")}
    argvs = [[a.format(day=day) for a in argv] for argv in SCENARIOS[scenario]]
    procs = [_killer(*argv, env={**env, "KILLER_BARRIER_DELAY_S": "0" if name == first else "0.5"})
             for name, argv in zip("AB", argvs)]
    outcomes = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    for rc, err in outcomes:
        assert rc == 0 and "barrier: write met" in err, err[-1500:]
    store = open_store(Settings.model_validate({"store": {"root": f"file://{root}"}}).store)
    domain = "natural" if ("natural" in scenario or "TPM" in scenario) else "ad"
    table = "raw/ad" if ingest else paths.tpm_features() if "TPM" in scenario else paths.complete_features(domain)
    got = delta.read(store, table)[0]
    assert _unique_keys(got) == got.num_rows, f"{got.num_rows - _unique_keys(got)} rows twice"
    if ingest:
        assert got.num_rows == pq.read_metadata(day).num_rows
    else:
        raw = delta.read(store, f"raw/{domain}", partitions=sorted(set(got["dt"].to_pylist())))[0]
        assert got.num_rows == raw.num_rows  # one feature row per impression of the windows
    fault_counts["concurrent first writes held at the commit point (both orders)"] = \
        fault_counts.get("concurrent first writes held at the commit point (both orders)", 0) + 1


def test_a_corrected_day_reaches_the_served_model(cpm_trained_store, tmp_path, monkeypatch, fault_counts):
    """Train and serve A-CTR 2026-11-24, then correct a raw ad day of its window: ``status`` and
    the model say so; rerunning the day without re-extracting keeps the model (and says why);
    after the extraction the rerun retrains with lineage naming both versions, and export serves
    the retrained attempt as a new version."""
    from ecdctr_pipeline import tiers
    from ecdctr_pipeline.app.main import main
    from ecdctr_pipeline.data import artifacts, freshness
    from ecdctr_pipeline.serving.export import export_version
    from ecdctr_pipeline.serving.pointer import read_served
    from tests.conftest import json_result, tiny_settings

    root = tmp_path / "store"
    shutil.copytree(cpm_trained_store, root)
    s = tiny_settings(f"file://{root}")
    store = open_store(s.store)
    extract.extract_complete(s, store, "ad", "2026-11-24")
    first = tiers.train("actr", s, store, "2026-11-24", cpm="2026-11-23")
    before = artifacts.read_manifest(store, paths.actr_model("2026-11-24"))
    assert before.inputs.raw_tables["raw/ad"]["days"][DAY] != "-"
    if not before.blessed:
        pytest.skip(f"the tiny A-CTR model was not blessed ({before.blessing.describe()}): nothing to serve")
    v1 = export_version(s, store, "2026-11-24")
    assert artifacts.read_manifest(store, paths.serving_version(v1["version"])).inputs.actr_attempt == before.attempt
    assert not first.skipped and freshness.changes(store, before) == []

    path, rows, clicks = _corrected_day(store, tmp_path)
    _ingest(monkeypatch, root, path)
    changed = freshness.changes(store, before)
    assert [(c.table, c.days) for c in changed] == [("raw/ad", (DAY,))]
    monkeypatch.setenv("ECDCTR_STORE", f"file://{root}")
    import io
    from contextlib import redirect_stdout

    buf = io.StringIO()
    with redirect_stdout(buf):
        assert main(["status", "--json"]) == 0
    status = json_result(buf.getvalue())
    model = next(a for a in status["artifacts"] if a["kind"] == "actr_model")
    assert model["stale"] and model["stale"][0]["days"] == [DAY]

    kept = tiers.train("actr", s, store, "2026-11-24", cpm="2026-11-23")  # features not re-extracted yet
    assert kept.skipped and kept.extra["stale"][0]["days"] == [DAY]
    assert artifacts.read_manifest(store, paths.actr_model("2026-11-24")).attempt == before.attempt

    extract.extract_complete(s, store, "ad", "2026-11-24")  # the DAG's extract step
    retrained = tiers.train("actr", s, store, "2026-11-24", cpm="2026-11-23")
    assert not retrained.skipped
    after = artifacts.read_manifest(store, paths.actr_model("2026-11-24"))
    why = after.extra["retrained_because"]
    table = paths.complete_features("ad")
    assert why["previous_attempt"] == before.attempt and after.attempt != before.attempt
    assert why["previous_delta_tables"][table] == before.inputs.delta_tables[table] < after.inputs.delta_tables[table]
    assert why["previous_raw_versions"]["raw/ad"] < after.inputs.raw_tables["raw/ad"]["version"]
    assert why["changed"][0]["days"] == [DAY] and freshness.changes(store, after) == []
    assert tiers.train("actr", s, store, "2026-11-24", cpm="2026-11-23").skipped  # fresh now: idempotent

    if after.blessed:
        v2 = export_version(s, store, "2026-11-24")
        assert not v2["skipped"] and v2["version"] == v1["version"] + 1 and read_served(store)["version"] == v2["version"]
        assert artifacts.read_manifest(store, paths.serving_version(v2["version"])).inputs.actr_attempt == after.attempt
        assert export_version(s, store, "2026-11-24")["skipped"]
    else:  # the retrained model lost to the one served: the gate keeps it, and says so
        assert after.blessing.baseline is not None
    fault_counts["stale models: corrected day retrained and re-exported"] = 1


def test_a_late_day_is_extracted_when_it_arrives(tmp_path, monkeypatch, fault_counts):
    """A day recorded as empty (it had not arrived) and later delivered: the next normal extraction
    recomputes the window with it, and freshness names it for a model trained before."""
    from ecdctr_pipeline.app.main import main
    from ecdctr_pipeline.data import artifacts, freshness

    root = tmp_path / "store"
    s = Settings.model_validate({"store": {"root": f"file://{root}"}, "features": {"engine": "duckdb"}})
    store = open_store(s.store)
    simulate(store, dt.date(2026, 10, 20), dt.date(2026, 11, 24), "tiny", seed=4, domains=("ad",), progress=False)
    late = delta.read(store, "raw/ad", partitions=[DAY])[0].drop_columns(["dt"])
    pq.write_table(late, tmp_path / "late.parquet")
    delta._open(store, "raw/ad").delete(f"dt = '{DAY}'")  # the day had not arrived
    monkeypatch.setenv("ECDCTR_STORE", f"file://{root}")
    monkeypatch.setenv("ECDCTR_FEATURES__ENGINE", "duckdb")
    assert main(["ingest", "--domain", "ad", "--empty-day", DAY, "--now", NOW]) == 0
    first = extract.extract_complete(s, store, "ad", "2026-11-24")
    assert not first.skipped and DAY not in delta.partitions(store, paths.complete_features("ad"))
    job = extract.complete_job(s, "ad", "2026-11-24")
    raw_inputs = extract.built_from(store, job)
    assert raw_inputs["raw/ad"]["days"][DAY] == "-"
    trained = artifacts.Manifest(kind="actr_model", artifact_id="2026-11-24", logical_date="2026-11-24",
                                 inputs=artifacts.Inputs(raw_tables=raw_inputs))
    assert freshness.changes(store, trained) == []
    assert main(["ingest", "--domain", "ad", "--now", NOW, "--input", str(tmp_path / "late.parquet")]) == 0
    assert [c.days for c in freshness.changes(store, trained)] == [(DAY,)]
    again = extract.extract_complete(s, store, "ad", "2026-11-24")
    assert not again.skipped and _day_counts(store, paths.complete_features("ad"), DAY)[0] == late.num_rows
    fault_counts["stale features: a late day"] = 1
