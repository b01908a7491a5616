"""A tiny store with raw data and features built by the DuckDB engine (no Spark needed)."""

import datetime as dt
import shutil

import pytest

from ecdctr_pipeline.settings import Settings


def tiny_settings(root: str, **over) -> Settings:
    return Settings.model_validate({
        "store": {"root": root},
        "features": {"engine": "duckdb", "max_seq_len": 10,
                     "hash_buckets": {"user_id": 400, "item_id": 300, "category_id": 16, "item_brand": 50}},
        "tpm": {"batch_size": 1024, "hidden_units": [16]},
        "cpm": {"hidden_units": [32, 16], "batch_size": 512, "epochs": 1, "attention_units": [8]},
        "actr": {"batch_size": 256, "epochs": 1},
        **over,
    })


@pytest.fixture(scope="session")
def tiny_pipeline_store(tmp_path_factory):
    """Raw 2026-04-01..2026-11-24 plus features for TPM 2026-10, CPM 2026-11-23 and A-CTR 2026-11-24."""
    from ecdctr_pipeline import extract
    from ecdctr_pipeline.simulate import simulate
    from ecdctr_pipeline.store import open_store

    root = tmp_path_factory.mktemp("tiny-pipeline")
    s = tiny_settings(f"file://{root}")
    simulate(open_store(s.store), dt.date(2026, 4, 1), dt.date(2026, 11, 24), "tiny", seed=3, progress=False)
    extract.extract_tpm(s, "2026-10")
    extract.extract_complete(s, "natural", "2026-11-23")
    extract.extract_complete(s, "ad", "2026-11-24")
    return root


@pytest.fixture
def pipeline_settings(tiny_pipeline_store, tmp_path):
    """A private copy of the tiny store (tests publish artifacts into it)."""
    dest = tmp_path / "store"
    shutil.copytree(tiny_pipeline_store, dest)
    return tiny_settings(f"file://{dest}")
