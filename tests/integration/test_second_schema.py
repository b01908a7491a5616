"""The tiny pipeline end to end under a second feature schema, as a user bringing their own log
would run it: a schema file with other profile and context columns (and other column names in
the files), `simulate --out` files, `ingest`, `backfill` of the three tiers, `score` of the
served model; then every table and artifact refuses the default schema, naming both versions."""

from __future__ import annotations

import json

import pytest
import yaml

from ecdctr_pipeline.app.main import main
from ecdctr_pipeline.core import paths
from ecdctr_pipeline.core.settings import load_settings
from ecdctr_pipeline.data import artifacts, delta
from ecdctr_pipeline.data.store import open_store

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SCHEMA = {
    "name": "shop-log", "version": 1,
    "sources": {"event_time": "ts", "user_id": "uid", "item_id": "iid", "category_id": "cat", "click": "clicked"},
    "user_profile": [{"name": "user_tier", "type": "int8", "vocab_size": 5},
                     {"name": "user_region", "type": "int32", "hash_buckets": 64}],
    "item_profile": [{"name": "item_shop", "type": "int32", "hash_buckets": 100}],
    "context": [{"name": "page", "type": "int8", "vocab_size": 6},
                {"name": "hour", "type": "int8", "vocab_size": 24}],
}


def _config(path, root, raw_schema) -> str:
    path.write_text(yaml.safe_dump({
        "store": {"root": root},
        "calendar": {"tpm_train_months": 2, "tpm_snapshot_months": 1},
        "features": {"engine": "duckdb", "max_seq_len": 10, "raw_schema": raw_schema,
                     "hash_buckets": {"user_id": 400, "item_id": 300, "category_id": 16}},
        "tpm": {"batch_size": 1024, "hidden_units": [16]},
        "cpm": {"hidden_units": [32, 16], "batch_size": 512, "epochs": 1, "attention_units": [8]},
        "actr": {"batch_size": 256, "epochs": 1, "min_gauc": 0.0},  # tiny: GAUC is noise (see tests/conftest.py)
        "orchestration": {"compare_target_only": False},
    }))
    return str(path)


def _last_json(text: str):
    """The backfill's JSON list: the last one printed (its steps print their results before it)."""
    start = 0 if text.startswith("[") else text.rindex("\n[\n") + 1
    return json.JSONDecoder().raw_decode(text, start)[0]


def test_tiny_pipeline_under_a_second_schema(tmp_path, capsys):
    (tmp_path / "shop-schema.yaml").write_text(yaml.safe_dump(SCHEMA))
    root = f"file://{tmp_path / 'store'}"
    cfg = _config(tmp_path / "shop.yaml", root, "shop-schema.yaml")  # relative to the config file
    settings = load_settings(cfg, environ={})
    fs = settings.features.feature_schema()
    assert fs.identity.name == "shop-log" and fs.categorical == ("user_tier", "user_region", "item_shop", "page", "hour")

    # the log as files with the schema's own column names, then ingested
    logs = tmp_path / "logs"
    assert main(["--config", cfg, "simulate", "--start", "2026-08-01", "--end", "2026-11-24", "--scale", "tiny",
                 "--seed", "2", "--out", str(logs), "--format", "csv"]) == 0
    header = next((logs / "ad").glob("*.csv")).read_text().splitlines()[0]
    assert header.replace('"', "").split(",") == ["ts", "uid", "iid", "cat", "clicked", "user_tier", "user_region",
                                                  "item_shop", "page", "hour"]
    for domain in ("natural", "ad"):
        assert main(["--config", cfg, "ingest", "--domain", domain, "--input", str(logs / domain),
                     "--now", "2026-11-25T00:00:00Z"]) == 0
    capsys.readouterr()

    # the three tiers through the DAGs' steps
    for tier, day in (("tpm", "2026-10-01"), ("cpm", "2026-11-23"), ("actr", "2026-11-24")):
        assert main(["--config", cfg, "backfill", "--from", day, "--to", day, "--tiers", tier, "--json"]) == 0
        rows = _last_json(capsys.readouterr().out)  # the steps print their own results before it
        assert [r["status"] for r in rows] == ["done"], rows

    store = open_store(settings.store)
    for table in ("raw/natural", "raw/ad", "features/tpm", "features/complete/natural", "features/complete/ad"):
        assert delta.recorded_schema(store, table) == fs.identity, table
    assert "user_tier" in delta.column_names(store, "features/complete/ad")
    assert "user_age" not in delta.column_names(store, "raw/ad")
    served = [m for _, m in artifacts.list_artifacts(store, "serving_version")]
    assert len(served) == 1
    version = served[0]
    for m in [version] + [artifacts.read_manifest(store, p) for p in (
            paths.tpm_set("2026-10"), paths.cpm_checkpoint("2026-11-23"), paths.actr_model("2026-11-24"))]:
        assert m.feature_schema == fs.identity.to_dict(), m.kind
    signature = version.extra["signature"]
    assert {"user_tier", "user_region", "item_shop", "page", "hour"} <= set(signature)
    assert not {"user_age", "device", "position", "item_brand"} & set(signature)

    # score holdout rows with the served SavedModel, as a client would send them
    from ecdctr_pipeline.core import calendar
    from ecdctr_pipeline.serving.export import raw_rows

    holdout = calendar.actr_plan("2026-11-24", settings.calendar).holdout_window
    table, _ = delta.read(store, "features/complete/ad", partitions=holdout.partitions())
    rows = {k: v[:4].tolist() for k, v in raw_rows(table, settings).items()}
    (tmp_path / "rows.json").write_text(json.dumps(rows))
    model_dir = tmp_path / "store" / paths.serving_version(int(version.artifact_id))
    assert main(["--config", cfg, "score", "--model", str(model_dir), "--input", str(tmp_path / "rows.json"),
                 "--json"]) == 0
    scores = json.loads(capsys.readouterr().out)["ctr"]
    assert len(scores) == 4 and all(0 < p < 1 for p in scores)

    # the default schema on this store: every table and artifact refuses it, naming both versions
    default_cfg = _config(tmp_path / "default.yaml", root, str(tmp_path / "default-schema.yaml"))
    from ecdctr_pipeline.core.schema import DEFAULT_SPEC

    (tmp_path / "default-schema.yaml").write_text(yaml.safe_dump(DEFAULT_SPEC))
    before = {t: delta.version(store, t) for t in ("raw/ad", "features/complete/ad")}
    for argv in (["ingest", "--domain", "ad", "--input", str(logs / "ad"), "--now", "2026-11-25T00:00:00Z"],
                 ["extract", "complete", "--domain", "ad", "--as-of", "2026-11-24", "--force"],
                 ["train", "actr", "--as-of", "2026-11-24", "--force"],
                 ["export", "--as-of", "2026-11-24", "--force"]):
        assert main(["--config", default_cfg] + argv) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "'shop-log' v1" in err[0] and "'default' v1" in err[0], (argv, err)
    assert {t: delta.version(store, t) for t in before} == before  # nothing written

    # the same name and version with another vocabulary: refused as a changed schema
    changed = {**SCHEMA, "context": [{"name": "page", "type": "int8", "vocab_size": 7},
                                     {"name": "hour", "type": "int8", "vocab_size": 24}]}
    (tmp_path / "changed.yaml").write_text(yaml.safe_dump(changed))
    changed_cfg = _config(tmp_path / "changed-cfg.yaml", root, "changed.yaml")
    assert main(["--config", changed_cfg, "train", "actr", "--as-of", "2026-11-24", "--force"]) == 2
    assert "same name and version with other columns" in capsys.readouterr().err
