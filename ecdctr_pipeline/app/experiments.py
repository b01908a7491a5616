"""``ecdctr experiments --table T[,T…]``: the paper's comparisons on the simulator, with the
evaluation protocol that can resolve them.

Protocol. For each seed: simulate ``scale`` into a fresh store, extract the features, train the
week-level models once (:func:`~ecdctr_pipeline.tiers.variants.prepare_week`), then for each of
``days`` consecutive A-CTR days train every variant of the requested tables on that day's ad
window and score it on that day's holdout (a variant is trained once even when several tables
show it). Scores of one day are on the same rows for every variant, so comparisons are paired:
a (seed, day, user) group is the unit of GAUC, the pooled GAUC of a variant is the
impression-weighted mean of its groups' AUCs, and each ordering's lift carries a 95% bootstrap
interval from resampling groups (users of a day, pooled over days and seeds). Every variant gets
the same tuning: the settings' epochs, and early stopping when ``training.validation_days`` > 0.

An ordering "A > B" *holds* when the lift's interval is above 0, is *reversed* when it is below
0, and is *unresolved* when it contains 0; "A ≥ B" holds unless the interval is below 0.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ecdctr_pipeline.core import calendar
from ecdctr_pipeline.core.errors import EcdctrError
from ecdctr_pipeline.core.report import markdown_table
from ecdctr_pipeline.core.settings import Settings
from ecdctr_pipeline.data import extract
from ecdctr_pipeline.data.store import ArtifactStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Table:
    key: str
    title: str
    variants: tuple[str, ...]
    reference: str  # lifts in the table are against this variant
    orderings: tuple[tuple[str, str, str], ...]  # (a, ">" | ">=", b): the paper's claims
    not_built: tuple[str, ...] = ()  # the paper's rows this project does not implement


TABLES: dict[str, Table] = {t.key: t for t in (
    Table("main", "E-CDCTR vs Target-only", ("target_only", "ecdctr"), "target_only",
          (("ecdctr", ">", "target_only"),)),
    Table("2", "Table 2: E-CDCTR against cross-domain and multi-domain models",
          ("target_only", "share_bottom", "mmoe", "star", "conet", "minet", "keep", "ecdctr"), "target_only",
          tuple(("ecdctr", ">", b) for b in ("target_only", "share_bottom", "mmoe", "star", "conet", "minet", "keep")),
          not_built=("DARec (the issue's optional row: a domain-adversarial autoencoder over the rating matrix)",)),
    Table("3", "Table 3: what TPM and CPM each add", ("target_only", "target_only_tpm", "cpm_without_tpm", "ecdctr"),
          "target_only",
          (("ecdctr", ">", "target_only"), ("target_only_tpm", ">", "target_only"),
           ("cpm_without_tpm", ">", "target_only"), ("ecdctr", ">", "target_only_tpm"),
           ("ecdctr", ">", "cpm_without_tpm"))),
    Table("4", "Table 4: source-only, sample merging and fine-tuning",
          ("source_only", "sample_merging", "target_only", "ecdctr"), "target_only",
          (("target_only", ">", "source_only"), ("ecdctr", ">", "target_only"), ("ecdctr", ">", "sample_merging"))),
    Table("6", "Table 6: what A-CTR takes over from the CPM", ("target_only_tpm", "transfer_embeddings",
          "transfer_mlp_without_bn", "transfer_all", "ecdctr"), "target_only_tpm",
          (("ecdctr", ">=", "transfer_all"), ("ecdctr", ">", "target_only_tpm"),
           ("transfer_embeddings", ">", "target_only_tpm"), ("transfer_mlp_without_bn", ">", "target_only_tpm"),
           ("ecdctr", ">", "transfer_embeddings"))),
    Table("5", "Table 5: how many TPM months CPM and A-CTR consume (0, 1, 2, 3)",
          ("cpm_without_tpm", "tpm_months_1", "tpm_months_2", "ecdctr", "month_positions"), "cpm_without_tpm",
          (("tpm_months_1", ">", "cpm_without_tpm"), ("tpm_months_2", ">", "tpm_months_1"),
           ("ecdctr", ">", "tpm_months_2"))),
    # the paper draws a curve and states no ordering this project could read (only its abstract is
    # available here): the report gives the curve and every lift against the default width, no verdict
    Table("fig4", "Figure 4: the TPM's embedding dimension", tuple(f"tpm_dim_{d}" for d in (4, 8, 16, 32, 64)),
          "tpm_dim_16", ()),
)}


def parse_tables(text: str) -> list[Table]:
    keys = [k.strip() for k in text.split(",") if k.strip()]
    bad = [k for k in keys if k not in TABLES]
    if bad or not keys:
        raise EcdctrError(f"--table {text!r}: expected one or more of {', '.join(TABLES)} (comma-separated)")
    return [TABLES[k] for k in keys]


def actr_days(settings: Settings, monday: dt.date, days: int) -> list[dt.date]:
    """The ``days`` consecutive A-CTR days from ``monday``, all using the CPM of that Monday."""
    if days < 1:
        raise EcdctrError(f"--days {days}: at least one A-CTR day")
    out = [monday + dt.timedelta(days=i) for i in range(days)]
    for d in out:
        if calendar.actr_plan(d, settings.calendar).cpm_monday != monday:
            raise calendar.CalendarError(f"A-CTR day {d} does not use the CPM of {monday} (--days {days})")
    return out


def run_days(settings: Settings, store: ArtifactStore, monday: dt.date, days: int, variants: list[str], *,
             repretrain_months: int | None = None) -> tuple[list[dict], dict]:
    """Every variant on ``days`` A-CTR days from ``monday`` in a store whose raw tables cover them
    (features are extracted here; the ``repretrained`` variant's longer natural window must be
    extracted by the caller). Returns one ``{"day", "labels", "users", "scores": {variant: array},
    "training": {variant: info}}`` per day, and the week-level models with what they recorded."""
    from ecdctr_pipeline.core.report import progress
    from ecdctr_pipeline.tiers import variants as registry

    specs = [registry.get(v) for v in variants]
    needs = set().union(*(s.needs for s in specs))
    settings = registry.with_needed_features(settings, needs)
    p = calendar.cpm_plan(monday, settings.calendar)
    if needs:
        extract.extract_tpm(settings, store, calendar.tpm_plan(p.embedding_set, settings.calendar).month)
        extract.extract_complete(settings, store, "natural", monday)
    out = []
    day_list = actr_days(settings, monday, days)
    for d in day_list:
        extract.extract_complete(settings, store, "ad", d)
    week = registry.prepare_week(settings, store, monday, needs, repretrain_months=repretrain_months)
    for d in day_list:
        row: dict = {"day": d.isoformat(), "scores": {}, "training": {}}
        for spec in progress(specs, desc=f"variants {d}", unit="model"):
            t0 = time.perf_counter()
            labels, scores, users, info = spec.score(settings, store, d, week)
            info["seconds"] = round(time.perf_counter() - t0, 2)  # training and scoring
            if "rows" in info:  # trained on the ad window: the epochs it used
                info.setdefault("epochs_run", settings.actr.epochs)
            row["training"][spec.name] = info
            if "labels" not in row:
                row["labels"], row["users"] = labels, users
            elif not (np.array_equal(row["labels"], labels) and np.array_equal(row["users"], users)):
                raise EcdctrError(f"experiments: {spec.name} scored other holdout rows of {d} than {specs[0].name}")
            row["scores"][spec.name] = scores
        out.append(row)
    return out, week


def _verdict(op: str, lo: float, hi: float) -> str:
    if op == ">=":
        return "holds" if hi >= 0 else "does not hold"
    return "holds" if lo > 0 else ("reversed" if hi < 0 else "unresolved")


def summarize(table: Table, runs: dict[int, list[dict]], *, n_boot: int = 2000) -> dict:
    """Per-variant GAUC (mean ± std over seeds, pooled over days), lifts and orderings with CIs."""
    from ecdctr_pipeline.evaluation.metrics import paired_gauc_lift, pooled_gauc

    seeds = sorted(runs)

    def pairs(a: str, b: str):
        return [(r["labels"], r["users"], r["scores"][a], r["scores"][b]) for s in seeds for r in runs[s]]

    def pooled(v: str, s: int):
        return pooled_gauc([(r["labels"], r["users"], r["scores"][v]) for r in runs[s]])

    per_seed = {v: [pooled(v, s).gauc for s in seeds] for v in table.variants}
    everything = pooled_gauc([(r["labels"], r["users"], r["scores"][table.reference]) for s in seeds for r in runs[s]])
    rows = []
    for v in table.variants:
        g = np.array(per_seed[v])
        lift = paired_gauc_lift(pairs(v, table.reference), n_boot=n_boot) if v != table.reference else None
        epochs = [r["training"][v]["epochs_run"] for s in seeds for r in runs[s] if "epochs_run" in r["training"][v]]
        rows.append({"variant": v, "epochs_used": float(np.mean(epochs)) if epochs else None, "gauc_mean": float(g.mean()), "gauc_std": float(g.std(ddof=1)) if len(g) > 1 else 0.0,
                     "gauc_per_seed": g.tolist(), "lift_vs_reference": lift})
    orderings = []
    for a, op, b in table.orderings:
        lift = paired_gauc_lift(pairs(a, b), n_boot=n_boot)
        orderings.append({"a": a, "op": op, "b": b, "lift": lift["lift"], "ci_low": lift["ci_low"],
                          "ci_high": lift["ci_high"], "verdict": _verdict(op, lift["ci_low"], lift["ci_high"])})
    return {"table": table.key, "title": table.title, "reference": table.reference, "seeds": seeds,
            "days": [r["day"] for r in runs[seeds[0]]], "rows": rows, "orderings": orderings,
            "coverage": everything.coverage, "groups": everything.users_scored,
            "not_built": list(table.not_built)}


def _plot(summary: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ecdctr_pipeline.tiers.variants import get

    rows = summary["rows"]
    if summary["table"] == "fig4":  # a curve over the dimension, as the paper draws it
        fig, ax = plt.subplots(figsize=(6, 3.6))
        dims = [int(r["variant"].rsplit("_", 1)[1]) for r in rows]
        ax.errorbar(dims, [r["gauc_mean"] for r in rows], yerr=[r["gauc_std"] for r in rows], marker="o", capsize=3)
        ax.set_xscale("log", base=2)
        ax.set_xticks(dims, [str(d) for d in dims])
        ax.set_xlabel("TPM embedding dimension")
        ax.set_ylabel("A-CTR GAUC (mean ± std over seeds)")
        ax.set_title(summary["title"])
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        return path
    fig, ax = plt.subplots(figsize=(7, 0.5 * len(rows) + 1.6))
    labels = [get(r["variant"]).label for r in rows]
    ax.barh(labels, [r["gauc_mean"] for r in rows], xerr=[r["gauc_std"] for r in rows], color="tab:blue",
            alpha=0.8, capsize=3)
    lo = min(r["gauc_mean"] - r["gauc_std"] for r in rows)
    hi = max(r["gauc_mean"] + r["gauc_std"] for r in rows)
    ax.set_xlim(lo - 0.02, hi + 0.02)
    ax.set_xlabel("GAUC pooled over the A-CTR days (mean ± std over seeds)")
    ax.set_title(summary["title"])
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_table(summary: dict, out_dir: Path, *, scale: str, seconds: float) -> Path:
    """``table<key>.md``, ``.png`` and ``.json`` under ``out_dir``."""
    from ecdctr_pipeline.tiers.variants import get

    out_dir.mkdir(parents=True, exist_ok=True)
    name = report_name(summary["table"])
    png = _plot(summary, out_dir / f"{name}.png")
    t = markdown_table(
        ("variant", "how it is trained", "epochs used (mean)", "GAUC (mean ± std over seeds)",
         f"lift vs {summary['reference']} [95% CI]"),
        [(get(r["variant"]).label, get(r["variant"]).what,
          "—" if r["epochs_used"] is None else f"{r['epochs_used']:.1f}", f"{r['gauc_mean']:.4f} ± {r['gauc_std']:.4f}",
          "reference" if r["lift_vs_reference"] is None else
          f"{r['lift_vs_reference']['lift']:+.4f} [{r['lift_vs_reference']['ci_low']:+.4f}, "
          f"{r['lift_vs_reference']['ci_high']:+.4f}]") for r in summary["rows"]])
    o = markdown_table(("the paper's ordering", "lift", "95% CI", "verdict"),
                       [(f"{get(x['a']).label} {x['op']} {get(x['b']).label}", f"{x['lift']:+.4f}",
                         f"[{x['ci_low']:+.4f}, {x['ci_high']:+.4f}]", x["verdict"]) for x in summary["orderings"]])
    missing = "".join(f"- not built: {x}\n" for x in summary["not_built"])
    md = (f"# {summary['title']} — scale {scale}, seeds {', '.join(map(str, summary['seeds']))}\n\n"
          f"A-CTR days {summary['days'][0]} .. {summary['days'][-1]} per seed; {summary['groups']} (seed, day, user) "
          f"groups scored (GAUC coverage {summary['coverage']:.2f} of the holdout rows); {seconds:.0f} s on this machine.\n\n"
          f"{t}\n\n![{summary['title']}]({png.name})\n\n## Orderings\n\n{o}\n\n{missing}"
          f"{_tuning(summary)}"
          f"\nProtocol: `ecdctr_pipeline/app/experiments.py` (paired bootstrap over (seed, day, user) groups; "
          f"'holds' = interval above 0, 'reversed' = below 0, 'unresolved' = contains 0).\n")
    path = out_dir / f"{name}.md"
    path.write_text(md)
    (out_dir / f"{name}.json").write_text(json.dumps({**summary, "scale": scale, "seconds": seconds}, indent=2))
    return path


def report_name(key: str) -> str:
    """``table3`` for Table 3; ``main`` and ``fig4`` as they are."""
    return key if key in ("main", "fig4") else f"table{key}"


def _tuning(summary: dict) -> str:
    t = summary.get("tuning")
    if not t:
        return ""
    a = t["actr"]
    return (f"\nTuning (the same for every fine-tuned variant): up to {t['max_epochs']} epochs, early stopping "
            f"on the last {t['validation_days']} day(s) of the ad training window (patience {t['patience']}, best "
            f"epoch kept), learning rate {a['learning_rate']}, batch {a['batch_size']} (profile `{t['profile']}`).\n")


def run_tables(base: Settings, tables: list[Table], *, seeds: list[int], scale: str, monday: str, days: int,
               out_dir: Path, validation_days: int = 2, max_epochs: int = 10) -> dict:
    """Simulate each seed into a scratch store, run the union of the tables' variants on the same
    days, write each table. Every fine-tuned variant trains up to ``max_epochs`` epochs with early
    stopping on the last ``validation_days`` days of its ad window (the same tuning for all).
    Returns ``{"tables": {table key: summary}, "seconds": …}``."""
    from ecdctr_pipeline.data.simulate import simulate
    from ecdctr_pipeline.data.store import open_store

    t0 = time.perf_counter()
    base = base.model_copy(deep=True)
    base.training.validation_days = validation_days
    base.actr.epochs = max_epochs
    monday_d = calendar.parse_date(monday, what="--monday")
    cal = base.calendar
    p = calendar.cpm_plan(monday_d, cal)  # validates the Monday
    first = calendar.tpm_plan(p.embedding_set, cal).data_window.start
    last = monday_d + dt.timedelta(days=days - 1)
    wanted = list(dict.fromkeys(v for t in tables for v in t.variants))
    runs: dict[int, list[dict]] = {}
    work = Path(tempfile.mkdtemp(prefix="ecdctr-exp-"))
    try:
        for seed in seeds:
            settings = base.model_copy(deep=True)
            settings.store.root = f"file://{work / f'seed-{seed}'}"
            settings.tpm.seed = settings.cpm.seed = settings.actr.seed = seed
            store = open_store(settings.store)
            simulate(store, first, last - dt.timedelta(days=1), scale, seed, progress=False,
                     schema=settings.features.feature_schema())
            runs[seed], _ = run_days(settings, store, monday_d, days, wanted)
            shutil.rmtree(work / f"seed-{seed}", ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    seconds = round(time.perf_counter() - t0, 1)
    out = {}
    for t in tables:
        s = summarize(t, runs)
        s["tuning"] = {"validation_days": validation_days, "max_epochs": max_epochs,
                       "patience": base.training.early_stopping_patience, "actr": base.actr.model_dump(),
                       "cpm": base.cpm.model_dump(), "tpm": base.tpm.model_dump(), "profile": base.profile}
        s["markdown"] = str(write_table(s, out_dir, scale=scale, seconds=seconds))
        out[t.key] = s
    return {"tables": out, "seconds": seconds}
