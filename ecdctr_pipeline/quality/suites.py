"""Data-quality gates with Great Expectations 1.x (ephemeral context, suites defined in code).

Suites are derived from :mod:`ecdctr_pipeline.core.schema` and settings, never written twice:

* every table: the column set (exact) and types, not-null keys, ``click`` in {0,1}, CTR of
  the day within ``quality.ctr_bounds[domain]``, freshness (the day's partition exists and is
  not empty), row volume within ``quality.volume_band`` × the trailing 7-day mean (when
  there is history), no duplicate impressions;
* complete features: behaviour sequences no longer than ``features.max_seq_len``;
* ``raw/ad``: the share of ad impressions whose user / item appears in the natural domain
  over the trailing 28 days, above ``quality.min_ad_*_known_natural``;
* ``features/complete/ad``: the share whose user / item is in the embedding set the A-CTR run
  of the day uses, above ``quality.min_ad_*_known_embeddings``;
* these four cross-domain checks are warnings under ``quality.cross_domain: warn`` (the
  default): a share below its floor is reported in the result's ``warnings`` (with the share
  observed) and logged, and the gate passes; under ``fail`` they fail it;
* TPM embedding sets (table ``tpm_set``, as-of the set's month): vectors finite and of the
  set's dimension, ids unique, each monthly table non-empty.

Derived checks (lengths, shares, finiteness) are computed as columns before validation so
GX reports them like any other expectation. :func:`validate` stores each result under
``quality/<table>/<dt>/``; the tiers' gates (:mod:`.gates`) alert once per failed run and raise
:class:`QualityGateFailed`.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from ecdctr_pipeline.data import artifacts, delta
from ecdctr_pipeline.core import calendar, paths
from ecdctr_pipeline.core.errors import EcdctrError
from ecdctr_pipeline.core.schema import IMPRESSION_KEY
from ecdctr_pipeline.core.settings import Settings
from ecdctr_pipeline.data.store import ArtifactStore

log = logging.getLogger(__name__)

CROSS_DOMAIN = ("_user_known_natural", "_item_known_natural", "_user_known_embeddings", "_item_known_embeddings")
TABLES = ("raw/natural", "raw/ad", "features/tpm", "features/complete/natural", "features/complete/ad", "tpm_set")


class QualityGateFailed(EcdctrError):
    """A suite failed: the run stops before training and nothing is published."""

    def __init__(self, result: dict):
        self.result = result
        failed = result["failed"]
        first = failed[0] if failed else {}
        column = f" on {first['column']}" if first.get("column") else ""
        super().__init__(f"quality gate failed for {result['table']} {result['as_of']}: {len(failed)} check(s) "
                         f"failed, first {first.get('label') or first.get('check')}{column} "
                         f"({observed_text(first, result.get('rows'))}); result at {result.get('stored_at')}")


def observed_text(failed: dict, rows: int | None = None) -> str:
    """What a failed check saw, in words: its observed value, else its unexpected rows (a
    column-map check observes no single value), else that the day had no rows."""
    from ecdctr_pipeline.core.settings import excerpt

    if failed.get("error"):
        return f"the check could not run: {excerpt(failed['error'], 80)}"
    if failed.get("observed") is not None:
        return f"observed {excerpt(failed['observed'], 60)}"
    n = failed.get("unexpected_count")
    if n:
        examples = failed.get("examples") or []
        return f"{n} unexpected value(s)" + (f", e.g. {excerpt(examples[:3], 60)}" if examples else "")
    if rows == 0:
        return "no rows"
    return "nothing observed"


@dataclass
class Check:
    expectation: Any
    label: str  # what it checks, in words


def _pandas_type(t) -> str:
    import pyarrow as pa

    if pa.types.is_timestamp(t):
        return "Timestamp"
    if pa.types.is_integer(t):
        return str(t.to_pandas_dtype().__name__)
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return "str"
    return "object"


def _schema_for(table: str, settings: Settings):
    import pyarrow as pa

    fs = settings.features.feature_schema()
    if table.startswith("raw/"):
        return fs.raw_table_schema
    if table == "features/tpm":
        return fs.tpm_feature_schema()
    if table.startswith("features/complete/"):
        return fs.complete_feature_schema(settings.features.counter_windows_days,
                                          source_sequence=settings.features.source_sequence(domain_of(table)))
    return pa.schema([])


def _list_columns(schema) -> list[str]:
    """The sequence columns (lists) of a table's schema: checked through their lengths."""
    import pyarrow as pa

    return [f.name for f in schema if pa.types.is_list(f.type)]


def domain_of(table: str) -> str | None:
    return "ad" if table.endswith("/ad") else "natural" if table.endswith("/natural") or table == "features/tpm" else None


def build_checks(table: str, settings: Settings, *, trailing_mean: float | None, extra_columns: list[str],
                 empty: bool = False) -> list[Check]:
    import great_expectations as gx

    E = gx.expectations
    q = settings.quality
    checks: list[Check] = []
    if table == "tpm_set":
        checks += [Check(E.ExpectTableRowCountToBeBetween(min_value=1), "every monthly table is non-empty"),
                   Check(E.ExpectColumnValuesToNotBeNull(column="id"), "ids are not null"),
                   Check(E.ExpectCompoundColumnsToBeUnique(column_list=["_table", "id"]), "ids unique per table"),
                   Check(E.ExpectColumnValuesToBeInSet(column="_vector_dim", value_set=[settings.tpm.embedding_dim]),
                         "vectors have the set's dimension"),
                   Check(E.ExpectColumnValuesToBeInSet(column="_vector_finite", value_set=[True]),
                         "vectors are finite")]
        return checks
    schema = _schema_for(table, settings)
    names = [f.name for f in schema]
    lists = _list_columns(schema)
    derived = [f"_len_{c}" for c in lists]
    checks.append(Check(E.ExpectTableColumnsToMatchSet(column_set=names + derived + list(extra_columns),
                                                       exact_match=True), "column set"))
    for f in schema:
        if f.name in lists:
            continue
        checks.append(Check(E.ExpectColumnValuesToBeOfType(column=f.name, type_=_pandas_type(f.type)),
                            f"type of {f.name}"))
    for c in settings.features.feature_schema().columns:
        if c.name not in names:
            continue
        if c.role in ("time", "key", "label"):
            checks.append(Check(E.ExpectColumnValuesToNotBeNull(column=c.name), f"{c.name} not null"))
        elif c.vocab_size is not None:  # the schema's vocabulary (missing values are allowed)
            checks.append(Check(E.ExpectColumnValuesToBeBetween(column=c.name, min_value=0, max_value=c.vocab_size - 1),
                                f"{c.name} within its vocabulary 0..{c.vocab_size - 1}"))
    checks.append(Check(E.ExpectColumnValuesToBeInSet(column="click", value_set=[0, 1]), "click in {0,1}"))
    dom = domain_of(table)
    lo, hi = q.ctr_bounds.get(dom, (0.0, 1.0))
    checks.append(Check(E.ExpectColumnMeanToBeBetween(column="click", min_value=lo, max_value=hi),
                        f"CTR within [{lo}, {hi}]"))
    checks.append(Check(E.ExpectTableRowCountToBeBetween(min_value=1), "freshness: the day's partition is not empty"))
    if empty:  # nothing else is meaningful on a missing day: freshness says what is wrong
        return checks[-1:]
    if trailing_mean is not None:
        blo, bhi = q.volume_band
        checks.append(Check(E.ExpectTableRowCountToBeBetween(min_value=int(np.floor(blo * trailing_mean)),
                                                             max_value=int(np.ceil(bhi * trailing_mean))),
                            f"volume within {blo}-{bhi} x trailing 7-day mean {trailing_mean:.0f}"))
    if "event_time" in names:
        checks.append(Check(E.ExpectCompoundColumnsToBeUnique(column_list=list(IMPRESSION_KEY)),
                            "no duplicate impressions"))
    if lists:
        n = settings.features.max_seq_len
        for col in lists:
            checks.append(Check(E.ExpectColumnValuesToBeBetween(column=f"_len_{col}", min_value=0, max_value=n),
                                f"{col} no longer than {n}"))
    floors = {"_user_known_natural": q.min_ad_users_known_natural, "_item_known_natural": q.min_ad_items_known_natural,
              "_user_known_embeddings": q.min_ad_users_known_embeddings,
              "_item_known_embeddings": q.min_ad_items_known_embeddings}
    for col in extra_columns:
        if col in floors:
            checks.append(Check(E.ExpectColumnMeanToBeBetween(column=col, min_value=floors[col], max_value=1.0),
                                f"share {col.strip('_').replace('_', ' ')} >= {floors[col]}"))
    return checks


# ------------------------------------------------------------------ data
def _day_frame(store: ArtifactStore, table: str, day: str):
    """The day's partition as pandas; an empty frame when the table or the day is missing."""
    import pandas as pd

    if not delta.exists(store, table) or day not in delta.partitions(store, table):
        return pd.DataFrame()
    t, _ = delta.read(store, table, partitions=[day])
    return t.to_pandas()


def _trailing_mean(store: ArtifactStore, table: str, day: dt.date) -> float | None:
    days = [(day - dt.timedelta(days=i)).isoformat() for i in range(1, 8)]
    present = set(delta.partitions(store, table)) if delta.exists(store, table) else set()
    have = [d for d in days if d in present]
    if not have:
        return None
    t, _ = delta.read(store, table, partitions=have, columns=["dt"])
    return t.num_rows / len(have)


def _known_share(values, known: np.ndarray) -> np.ndarray:
    return np.isin(np.asarray(values), known)


def prepare(settings: Settings, store: ArtifactStore, table: str, as_of: str):
    """The frame to validate (with derived columns), the trailing mean and notes on skipped checks."""
    import pandas as pd

    notes: list[str] = []
    if table == "tpm_set":
        month = calendar.Month.parse(as_of[:7])
        m = artifacts.find_manifest(store, paths.tpm_set(month))
        if m is None:
            return pd.DataFrame({"_table": pd.Series([], dtype=str), "id": pd.Series([], dtype="int64"),
                                 "_vector_dim": pd.Series([], dtype="int64"),
                                 "_vector_finite": pd.Series([], dtype=bool)}), None, [
                f"embedding set {month} is not published"], []
        from ecdctr_pipeline.data import embedding_sets

        frames = []
        for side in embedding_sets.SIDES:
            for mon in m.months:
                name = embedding_sets.table_name(side, mon)
                ids, vecs = _read_vectors(artifacts.load_bytes(store, paths.tpm_set(month), name, m))
                frames.append(pd.DataFrame({"_table": name, "id": ids, "_vector_dim": vecs.shape[1],
                                            "_vector_finite": np.isfinite(vecs).all(axis=1)}))
        return pd.concat(frames, ignore_index=True), None, notes, []
    day = calendar.parse_date(as_of, what="--as-of")
    df = _day_frame(store, table, day.isoformat())
    trailing = _trailing_mean(store, table, day)
    extra: list[str] = []
    if df.empty:
        return df, trailing, notes, extra
    for col in _list_columns(_schema_for(table, settings)):
        df[f"_len_{col}"] = df[col].map(len)
    if table == "raw/ad":
        # known from the natural domain: the CPM's natural window (calendar.cpm_window_days) up to the day
        trail = settings.calendar.cpm_window_days
        window = calendar.Window(day - dt.timedelta(days=trail), day + dt.timedelta(days=1))
        nat_days = [d for d in window.partitions() if d in set(delta.partitions(store, "raw/natural"))]
        if nat_days:
            nat, _ = delta.read(store, "raw/natural", partitions=nat_days, columns=["user_id", "item_id"])
            df["_user_known_natural"] = _known_share(df["user_id"], np.unique(np.asarray(nat["user_id"])))
            df["_item_known_natural"] = _known_share(df["item_id"], np.unique(np.asarray(nat["item_id"])))
            extra += ["_user_known_natural", "_item_known_natural"]
        else:
            notes.append(f"cross-domain natural checks not evaluated: no raw/natural data in the trailing {trail} days")
    if table == "features/complete/ad":
        plan = calendar.actr_plan(day + dt.timedelta(days=1), settings.calendar)
        m = artifacts.find_manifest(store, paths.tpm_set(plan.expected_embedding_set))
        if m is not None:
            from ecdctr_pipeline.data import embedding_sets

            hist = embedding_sets.load(store, m)
            df["_user_known_embeddings"] = _known_share(df["user_id"], hist.user_ids)
            df["_item_known_embeddings"] = _known_share(df["item_id"], hist.item_ids)
            extra += ["_user_known_embeddings", "_item_known_embeddings"]
        else:
            notes.append(f"embedding-set checks not evaluated: set {plan.expected_embedding_set} is not published")
    return df, trailing, notes, extra


def _read_vectors(data: bytes):
    """An embedding table as (ids, vectors) without the loader's own checks (GX reports them)."""
    import io

    import pyarrow.parquet as pq

    t = pq.read_table(io.BytesIO(data))
    ids = np.asarray(t["id"]).astype(np.int64)
    lists = t["vector"].combine_chunks()
    if hasattr(lists.type, "list_size"):
        vecs = np.asarray(lists.flatten()).reshape(len(ids), lists.type.list_size)
    else:
        vecs = np.array(lists.to_pylist(), dtype=np.float32)
    return ids, vecs


# ------------------------------------------------------------------ run
def _jsonable(v: Any) -> Any:
    if isinstance(v, (np.generic,)):
        return v.item()
    if isinstance(v, dict):
        return {k: _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, (dt.datetime, dt.date)):
        return v.isoformat()
    return v


def validate(settings: Settings, store: ArtifactStore, table: str, as_of: str) -> dict:
    """Run the suite of ``table`` on the partition of ``as_of``; store and return the result."""
    if table not in TABLES:
        raise EcdctrError(f"unknown table {table!r}: expected one of {', '.join(TABLES)}")
    t0 = time.perf_counter()
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx

    df, trailing, notes, extra = prepare(settings, store, table, as_of)
    checks = build_checks(table, settings, trailing_mean=trailing, extra_columns=extra, empty=df.empty)
    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    ctx = gx.get_context(mode="ephemeral")
    try:
        from great_expectations.data_context.types.base import ProgressBarsConfig

        ctx.variables.progress_bars = ProgressBarsConfig(globally=False)
    except (ImportError, AttributeError, TypeError):
        pass
    asset = ctx.data_sources.add_pandas("ecdctr").add_dataframe_asset(name=table.replace("/", "_"))
    batch = asset.add_batch_definition_whole_dataframe("day")
    # all expectations at construction: one store write (add_expectation re-serialises the suite each time)
    suite = ctx.suites.add(gx.ExpectationSuite(name=f"ecdctr_{table.replace('/', '_')}",
                                               expectations=[c.expectation for c in checks]))
    vd = ctx.validation_definitions.add(gx.ValidationDefinition(name="gate", data=batch, suite=suite))
    if df.empty and not df.columns.size:
        df = _schema_for(table, settings).empty_table().to_pandas()
    res = vd.run(batch_parameters={"dataframe": df}, result_format={"result_format": "SUMMARY",
                                                                    "partial_unexpected_count": 5})
    by_type = {}
    for c in checks:
        by_type.setdefault((c.expectation.expectation_type, json.dumps(_jsonable(
            {k: v for k, v in c.expectation.configuration.kwargs.items() if k not in ("batch_id",)}), sort_keys=True,
            default=str)), c.label)
    results, failed, warnings = [], [], []
    warn_only = settings.quality.cross_domain == "warn"
    for r in res.results:
        cfg = r.expectation_config
        kwargs = {k: v for k, v in cfg.kwargs.items() if k != "batch_id"}
        label = by_type.get((cfg.type, json.dumps(_jsonable(kwargs), sort_keys=True, default=str)), cfg.type)
        item = {"check": cfg.type, "label": label, "column": kwargs.get("column") or kwargs.get("column_list"),
                "success": bool(r.success), "observed": _jsonable(r.result.get("observed_value")),
                "unexpected_count": _jsonable(r.result.get("unexpected_count")),
                "examples": _jsonable((r.result.get("partial_unexpected_list") or [])[:5]),
                "bounds": _jsonable({k: kwargs[k] for k in ("min_value", "max_value", "value_set") if k in kwargs})}
        if r.exception_info and r.exception_info.get("raised_exception"):
            item["error"] = str(r.exception_info.get("exception_message"))[:300]
        if warn_only and item["column"] in CROSS_DOMAIN:
            item["severity"] = "warn"
        results.append(item)
        if not item["success"]:
            (warnings if item.get("severity") == "warn" else failed).append(item)
    for w in warnings:
        log.warning("quality %s %s: %s: observed %s (quality.cross_domain: warn, not failing the gate)",
                    table, as_of, w["label"], w["observed"])
    day_key = as_of[:7] if table == "tpm_set" else calendar.parse_date(as_of).isoformat()
    result = {"table": table, "as_of": day_key, "success": not failed, "rows": int(len(df)),
              "checks": len(results), "failed": failed, "warnings": warnings, "results": results, "notes": notes,
              "seconds": round(time.perf_counter() - t0, 3),
              "validated_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
    key = f"{paths.quality_result(table, day_key)}/result.json"
    result["stored_at"] = store.uri(key)
    result["data_docs"] = _data_docs(store, res, f"{paths.quality_result(table, day_key)}/data_docs.html")
    store.put_bytes(key, json.dumps(result, indent=2, default=str).encode())
    return result


def _data_docs(store: ArtifactStore, res, key: str) -> str | None:
    """Great Expectations' own Data Docs page of this validation (its validation-results renderer),
    stored beside the result; alerts link to it. Its styles load from public CDNs when opened. A
    rendering failure is logged and never fails the gate."""
    try:
        from great_expectations.render.renderer import ValidationResultsPageRenderer
        from great_expectations.render.view import DefaultJinjaPageView

        page = DefaultJinjaPageView().render(ValidationResultsPageRenderer().render(res))
    except Exception as exc:  # noqa: BLE001 - the gate's verdict stands without its page
        log.warning("quality: Data Docs page not rendered (%s: %s)", type(exc).__name__, exc)
        return None
    store.put_bytes(key, page.encode())
    return store.uri(key)


def summary_text(result: dict) -> str:
    from ecdctr_pipeline.core.report import markdown_table

    head = (f"{result['table']} {result['as_of']}: {'PASSED' if result['success'] else 'FAILED'} "
            f"({result['checks']} checks, {result['rows']} rows, {result['seconds']:.2f} s)")
    lines = [head]
    if result["failed"]:
        lines += ["", markdown_table(("failed check", "column", "observed", "bounds", "examples"),
                                     [(f["label"], f["column"], f["observed"] if f["observed"] is not None
                                       else observed_text(f, result["rows"]), f["bounds"], f["examples"][:3])
                                      for f in result["failed"]])]
    for w in result.get("warnings", []):
        lines.append(f"warning: {w['label']}: observed {w['observed']} (quality.cross_domain: warn)")
    for n in result["notes"]:
        lines.append(f"note: {n}")
    if result.get("data_docs"):
        lines.append(f"Data Docs: {result['data_docs']}")
    lines.append(f"result stored at {result['stored_at']}")
    return "\n".join(lines)
