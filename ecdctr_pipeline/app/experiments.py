"""``ecdctr experiments --table T[,T…]``: the paper's comparisons on the simulator, with the
evaluation protocol that can resolve them (issue 31).

Replicates. A replicate is one simulated world (``--worlds``) × one training seed
(``--train-seeds``): the world seed draws the users, items, tastes and clicks; the training seed
(:func:`training_seed`, drawn from both the world and the ``--train-seeds`` entry, so that no two
replicates share initial weights) initialises and orders every model of the replicate (TPM,
CPM, A-CTR and the baselines). The
days, users and models of one replicate share their world and their training run, so they are
not independent: the unit of every interval and test is the replicate, never a (day, user)
group. Each world is simulated and its features extracted once; each training seed trains in a
scratch copy of that world's tables (hard links), so nothing one seed publishes is reused by
another.

Per replicate: the week-level models are trained once
(:func:`~ecdctr_pipeline.tiers.variants.prepare_week`), then for each of ``days`` consecutive
A-CTR days every variant of the requested tables is trained on that day's ad window and scored
on that day's holdout (a variant is trained once even when several tables show it). Scores of a
day are on the same rows for every variant, so a replicate's lift (A minus B, GAUC pooled over
its days) is paired.

Two metrics. *Observed*: the GAUC of the holdout's drawn clicks. *Expected* (when
``--probe-multiple`` > 0): every model also scores a probe holdout, about that many times the
day's ad volume drawn from the same world for the holdout day (``World.probe``), its features
extracted by the same job in a store of its own; its GAUC is the expected GAUC over the true
click probabilities (``metrics.expected_gauc``), free of label noise. Verdicts use the expected
GAUC when it exists, the observed one otherwise; the report gives both.

Statistics (:mod:`ecdctr_pipeline.evaluation.protocol`): per ordering the paired t test over
replicates, Holm's correction across the table's orderings, and the minimum detectable effect at
80% power for the replicates run. "A > B" holds when significant after the correction and A is
above, is reversed when significant and below, else unresolved; "A >= B" is a non-inferiority
test (one-sided, ``--margin``); "A ~ B" (the instrument's A/A check) is "no difference detected"
unless significant. One replicate gives no interval: every verdict is then "unresolved".

Every fine-tuned variant gets the same tuning and budget: the settings' epochs (``--max-epochs``)
and early stopping when ``training.validation_days`` > 0; the samples each one saw are reported.
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
    orderings: tuple[tuple[str, str, str], ...]  # (a, ">" | ">=" | "~", b): the paper's claims ("~": A/A)
    not_built: tuple[str, ...] = ()  # the paper's rows this project does not implement


TABLES: dict[str, Table] = {t.key: t for t in (
    Table("main", "E-CDCTR vs Target-only", ("target_only", "ecdctr"), "target_only",
          (("ecdctr", ">", "target_only"),)),
    Table("2", "Table 2: E-CDCTR against cross-domain and multi-domain models",
          ("target_only", "share_bottom", "mmoe", "star", "conet", "minet", "keep", "ecdctr"), "target_only",
          tuple(("ecdctr", ">", b) for b in ("target_only", "share_bottom", "mmoe", "star", "conet", "minet", "keep"))
          # the co-training methods beat Target-only, STAR does not, KEEP is the best baseline
          + tuple((b, ">", "target_only") for b in ("share_bottom", "mmoe", "conet", "minet"))
          + (("target_only", ">", "star"),)
          + tuple(("keep", ">", b) for b in ("target_only", "share_bottom", "mmoe", "star", "conet", "minet")),
          not_built=("DARec (the issue's optional row: a domain-adversarial autoencoder over the rating matrix)",)),
    Table("3", "Table 3: what TPM and CPM each add", ("target_only", "target_only_tpm", "cpm_without_tpm", "ecdctr"),
          "target_only",
          (("ecdctr", ">", "target_only"), ("target_only_tpm", ">", "target_only"),
           ("cpm_without_tpm", ">", "target_only"), ("ecdctr", ">", "target_only_tpm"),
           ("ecdctr", ">", "cpm_without_tpm"), ("cpm_without_tpm", ">", "target_only_tpm"))),
    Table("4", "Table 4: source-only, sample merging and fine-tuning",
          ("source_only", "sample_merging", "target_only", "ecdctr"), "target_only",
          (("target_only", ">", "source_only"), ("ecdctr", ">", "target_only"), ("ecdctr", ">", "sample_merging"),
           ("target_only", ">", "sample_merging"), ("sample_merging", ">", "source_only"), ("ecdctr", ">", "source_only"))),
    Table("6", "Table 6: what A-CTR takes over from the CPM", ("target_only_tpm", "transfer_embeddings",
          "transfer_mlp_without_bn", "transfer_all", "ecdctr"), "target_only_tpm",
          (("ecdctr", ">=", "transfer_all"), ("ecdctr", ">", "target_only_tpm"),
           ("transfer_embeddings", ">", "target_only_tpm"), ("transfer_mlp_without_bn", ">", "target_only_tpm"),
           ("ecdctr", ">", "transfer_embeddings"), ("transfer_all", ">", "target_only_tpm"),
           ("transfer_mlp_without_bn", ">", "transfer_embeddings"), ("ecdctr", ">", "transfer_mlp_without_bn"),
           ("transfer_all", ">", "transfer_embeddings"), ("transfer_all", ">", "transfer_mlp_without_bn"))),
    Table("5", "Table 5: how many TPM months CPM and A-CTR consume (0, 1, 2, 3)",
          ("cpm_without_tpm", "tpm_months_1", "tpm_months_2", "ecdctr", "month_positions"), "cpm_without_tpm",
          (("tpm_months_1", ">", "cpm_without_tpm"), ("tpm_months_2", ">", "tpm_months_1"),
           ("ecdctr", ">", "tpm_months_2"))),
    # the paper draws a curve and states no ordering this project could read (only its abstract is
    # available here): the report gives the curve and every lift against the default width, no verdict
    Table("fig4", "Figure 4: the TPM's embedding dimension", tuple(f"tpm_dim_{d}" for d in (4, 8, 16, 32, 64)),
          "tpm_dim_16", ()),
    # the instrument's own check: a planted effect must be found, an A/A difference must not
    Table("aa", "The instrument: a planted effect and an A/A comparison",
          ("target_only", "target_only_reseeded", "planted"), "target_only",
          (("planted", ">", "target_only"), ("target_only_reseeded", "~", "target_only"))),
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


def extract_inputs(settings: Settings, store: ArtifactStore, monday: dt.date, days: int, needs: set[str]) -> Settings:
    """The feature tables the variants that ``needs`` these week-level inputs read on ``days`` A-CTR
    days from ``monday`` (a table already built from the same raw versions is skipped). Returns
    the settings the features were extracted under."""
    from ecdctr_pipeline.tiers import variants as registry

    settings = registry.with_needed_features(settings, needs)
    p = calendar.cpm_plan(monday, settings.calendar)
    if needs:
        extract.extract_tpm(settings, store, calendar.tpm_plan(p.embedding_set, settings.calendar).month)
        extract.extract_complete(settings, store, "natural", monday)
    for d in actr_days(settings, monday, days):
        extract.extract_complete(settings, store, "ad", d)
    return settings


@dataclass(frozen=True)
class Probe:
    """A probe holdout of one A-CTR day: a store whose raw ad table holds the probe rows on that
    day (and the world's own rows before it), and each probe row's true click probability."""

    store: ArtifactStore | None  # None: the day's own holdout (its true probabilities only)
    probs: np.ndarray
    clicks: np.ndarray  # the clicks the simulator drew: the holdout's labels, row for row


def _check_drawn(labels: np.ndarray, drawn: Probe, what: str) -> None:
    """The scored rows are the simulator's rows in its order (else probabilities would be paired
    with the wrong rows)."""
    if labels.size != drawn.probs.size or not np.array_equal(np.asarray(labels, np.int64),
                                                              np.asarray(drawn.clicks, np.int64)):
        raise EcdctrError(f"experiments: {what} has {labels.size} rows whose labels are not the {drawn.probs.size} "
                          "clicks the simulator drew in that order")


def _planted(base: np.ndarray, probs: np.ndarray, fraction: float) -> np.ndarray:
    """``base`` scores moved by ``fraction`` x the true click logit (in logit space)."""
    eps = 1e-6
    b = np.clip(np.asarray(base, np.float64), eps, 1 - eps)
    p = np.clip(np.asarray(probs, np.float64), eps, 1 - eps)
    z = np.log(b / (1 - b)) + fraction * np.log(p / (1 - p))
    return 1.0 / (1.0 + np.exp(-z))


def run_days(settings: Settings, store: ArtifactStore, monday: dt.date, days: int, variants: list[str], *,
             repretrain_months: int | None = None, truth: dict[str, Probe] | None = None,
             probes: dict[str, Probe] | None = None, planted: float = 0.0) -> tuple[list[dict], dict]:
    """Every variant on ``days`` A-CTR days from ``monday`` in a store whose raw tables cover them
    (features are extracted here; the ``repretrained`` variant's longer natural window must be
    extracted by the caller). Returns one ``{"day", "labels", "users", "scores": {variant: array},
    "training": {variant: info}}`` per day, and the week-level models with what they recorded.

    On a simulated world: ``truth`` (day → the true click probability and drawn click of each
    holdout row, in the holdout's order) and ``probes`` (day → :class:`Probe`) add ``"probs"`` and ``"probe":
    {"labels", "users", "probs", "scores"}`` to a day; a derived variant (``planted``) is
    Target-only's scores moved by ``planted`` x the true logit, on both holdouts."""
    from ecdctr_pipeline.core.report import progress
    from ecdctr_pipeline.evaluation.holdout import probing
    from ecdctr_pipeline.tiers import variants as registry

    specs = [registry.get(v) for v in variants]
    derived = [s for s in specs if s.derived_from]
    for s in derived:
        if s.derived_from not in variants:
            raise EcdctrError(f"experiments: {s.name} is derived from {s.derived_from}; run both")
        if truth is None or probes is None:
            raise EcdctrError(f"experiments: {s.name} needs a simulated world's true click probabilities "
                              f"(--probe-multiple > 0)")
    trained = [s for s in specs if not s.derived_from]
    needs = set().union(*(s.needs for s in specs))
    settings = extract_inputs(settings, store, monday, days, needs)
    out = []
    day_list = actr_days(settings, monday, days)
    week = registry.prepare_week(settings, store, monday, needs, repretrain_months=repretrain_months)
    for d in day_list:
        key = d.isoformat()
        probe = (probes or {}).get(key)
        if probes is not None and probe is None:
            raise EcdctrError(f"experiments: no probe holdout for {key}")
        if probe is not None:
            extract.extract_complete(settings, probe.store, "ad", d)
        row: dict = {"day": key, "scores": {}, "training": {}}
        if probe is not None:
            row["probe"] = {"probs": probe.probs, "scores": {}}
        for spec in progress(trained, desc=f"variants {d}", unit="model"):
            t0 = time.perf_counter()
            with probing(probe.store if probe is not None else None):
                labels, scores, users, info = spec.score(settings, store, d, week)
            info["seconds"] = round(time.perf_counter() - t0, 2)  # training and scoring
            if "rows" in info:  # trained on the ad window: the epochs it used
                info.setdefault("epochs_run", settings.actr.epochs)
            if probe is not None:
                pl, ps, pu = info.pop("probe")
                _same_rows(row["probe"], pl, pu, f"{spec.name}'s probe holdout of {key}")
                row["probe"]["scores"][spec.name] = ps
            row["training"][spec.name] = info
            _same_rows(row, labels, users, f"{spec.name}'s holdout of {key}")
            row["scores"][spec.name] = scores
        if probe is not None:
            _check_drawn(row["probe"]["labels"], probe, f"the probe holdout of {key}")
        if truth is not None:
            _check_drawn(row["labels"], truth[key], f"the holdout of {key}")
            row["probs"] = truth[key].probs
        for spec in derived:
            row["scores"][spec.name] = _planted(row["scores"][spec.derived_from], row["probs"], planted)
            row["probe"]["scores"][spec.name] = _planted(row["probe"]["scores"][spec.derived_from],
                                                         row["probe"]["probs"], planted)
            row["training"][spec.name] = {"planted": planted}
        out.append(row)
    return out, week


def _same_rows(row: dict, labels, users, what: str) -> None:
    if "labels" not in row:
        row["labels"], row["users"] = labels, users
    elif not (np.array_equal(row["labels"], labels) and np.array_equal(row["users"], users)):
        raise EcdctrError(f"experiments: {what} has other rows than the first variant's")


ALPHA = 0.05
TARGET_EFFECT = 0.005  # the paper's effects are 0.002-0.009 GAUC: replicates to resolve this one are reported


def _replicate_gauc(rep: dict, variant: str, metric: str) -> float:
    from ecdctr_pipeline.evaluation.metrics import pooled_gauc

    if metric == "expected":
        return pooled_gauc([(r["probe"]["probs"], r["probe"]["users"], r["probe"]["scores"][variant])
                            for r in rep["days"]], expected=True).gauc
    return pooled_gauc([(r["labels"], r["users"], r["scores"][variant]) for r in rep["days"]]).gauc


def _test(lifts: list[float], op: str, margin: float) -> dict:
    from ecdctr_pipeline.evaluation.protocol import mde, paired_test, replicates_needed, seed_interval

    ci = seed_interval(lifts)
    out = {"lift": ci["mean"], "ci_low": ci["ci_low"], "ci_high": ci["ci_high"], "sd": ci["sd"],
           "replicates": len(lifts), "lifts": list(lifts), "mde": mde(ci["sd"], len(lifts)), "p": None,
           "replicates_for_target": replicates_needed(ci["sd"], TARGET_EFFECT)}
    if len(lifts) >= 2:
        t = paired_test(lifts, margin=margin if op == ">=" else 0.0,
                        alternative="greater" if op == ">=" else "two-sided")
        out["p"], out["test"] = t["p"], t
    return out


def _ordering_verdict(op: str, x: dict) -> str:
    from ecdctr_pipeline.evaluation.protocol import verdict

    if x["p"] is None:
        return "unresolved (1 replicate)"
    if op == "~":
        return "differs" if x["p_holm"] <= ALPHA else "no difference detected"
    if op == ">=":
        return "holds" if x["p_holm"] <= ALPHA else "unresolved"
    return verdict(x["test"], x["p_holm"], alpha=ALPHA)


def _mean_curve(curves: list[list[float]]) -> list[float]:
    """The mean of curves of different lengths, epoch by epoch, over the fits that ran it."""
    n = max(map(len, curves))
    padded = np.full((len(curves), n), np.nan)
    for i, c in enumerate(curves):
        padded[i, :len(c)] = c
    return [round(float(x), 6) for x in np.nanmean(padded, axis=0)]


def convergence(infos: list[dict]) -> dict:
    """How a variant's fits ended, over its fits (replicates x days): the share stopped by early
    stopping (the validation loss stopped improving before the epoch budget), the mean training
    and validation loss curves, the median BatchNorm gap before the statistics were settled."""
    fits = [i for i in infos if i.get("loss_curve")]
    if not fits:
        return {"fits": 0}
    stopped = [i["epochs_run"] < i["max_epochs"] for i in fits if "epochs_run" in i and "max_epochs" in i]
    gaps = [i["bn_gap"] for i in fits if i.get("bn_gap") is not None]
    vals = [i["val_loss_curve"] for i in fits if i.get("val_loss_curve")]
    clicks = [i["val_clicks"] for i in fits if "val_clicks" in i]
    return {"fits": len(fits), "stopped_early": float(np.mean(stopped)) if stopped else None,
            "val_clicks_mean": float(np.mean(clicks)) if clicks else None,
            "loss_curve": _mean_curve([i["loss_curve"] for i in fits]),
            "val_loss_curve": _mean_curve(vals) if vals else None,
            "bn_gap_median": float(np.median(gaps)) if gaps else None}


def summarize(table: Table, runs: dict[str, dict], *, margin: float = 0.002) -> dict:
    """Per-variant GAUC over replicates and each ordering's test. ``runs``: replicate key →
    ``{"world", "seed", "days": run_days' rows}``."""
    from ecdctr_pipeline.evaluation.metrics import pooled_gauc
    from ecdctr_pipeline.evaluation.protocol import holm

    keys = sorted(runs)
    if not keys:
        raise EcdctrError("experiments: no replicates to summarize")
    probed = all("probe" in r for k in keys for r in runs[k]["days"])
    metric = "expected" if probed else "observed"
    metrics = ("observed", "expected") if probed else ("observed",)
    g = {(v, m): np.array([_replicate_gauc(runs[k], v, m) for k in keys]) for v in table.variants for m in metrics}

    def spread(x):
        return float(x.std(ddof=1)) if x.size > 1 else 0.0

    rows = []
    for v in table.variants:
        infos = [r["training"][v] for k in keys for r in runs[k]["days"]]
        epochs = [i["epochs_run"] for i in infos if "epochs_run" in i]
        samples = [i["rows"] * i["epochs_run"] for i in infos if "epochs_run" in i and "rows" in i]
        row = {"variant": v, "epochs_used": float(np.mean(epochs)) if epochs else None,
               "samples_seen": float(np.mean(samples)) if samples else None, **convergence(infos),
               "gauc_mean": float(g[v, "observed"].mean()), "gauc_std": spread(g[v, "observed"]),
               "gauc_per_replicate": g[v, "observed"].tolist(),
               "lift_vs_reference": None if v == table.reference else
               _test((g[v, metric] - g[table.reference, metric]).tolist(), ">", margin)}
        if probed:
            row.update(expected_mean=float(g[v, "expected"].mean()), expected_std=spread(g[v, "expected"]),
                       expected_per_replicate=g[v, "expected"].tolist())
        rows.append(row)
    orderings = [{"a": a, "op": op, "b": b, **_test((g[a, metric] - g[b, metric]).tolist(), op, margin)}
                 for a, op, b in table.orderings]
    adjusted = holm({str(i): o["p"] for i, o in enumerate(orderings) if o["p"] is not None})
    for i, o in enumerate(orderings):
        o["p_holm"] = adjusted.get(str(i))
        o["verdict"] = _ordering_verdict(o["op"], o)
    mdes = [o["mde"] for o in orderings] or [r["lift_vs_reference"]["mde"] for r in rows if r["lift_vs_reference"]]
    mdes = [m for m in mdes if m is not None]
    everything = pooled_gauc([(r["labels"], r["users"], r["scores"][table.reference])
                              for k in keys for r in runs[k]["days"]])
    out = {"table": table.key, "title": table.title, "reference": table.reference, "metric": metric,
           "margin": margin, "alpha": ALPHA, "replicates": [{"key": k, "world": runs[k]["world"],
                                                           "seed": runs[k]["seed"]} for k in keys],
           "days": [r["day"] for r in runs[keys[0]]["days"]], "rows": rows, "orderings": orderings,
           "mde": max(mdes) if mdes else None, "coverage": everything.coverage, "groups": everything.users_scored,
           "holdout_rows": int(np.mean([sum(r["labels"].size for r in runs[k]["days"]) for k in keys])),
           "not_built": list(table.not_built)}
    r2 = [runs[k]["tpm_taste_r2"]["mean"] for k in keys if (runs[k].get("tpm_taste_r2") or {}).get("mean") is not None]
    if r2:
        out["tpm_taste_r2"] = {"mean": float(np.mean(r2)), "per_replicate": r2}
    if probed:  # the ceiling: the true probabilities themselves scored on the probe holdouts
        ceiling = [pooled_gauc([(r["probe"]["probs"], r["probe"]["users"], r["probe"]["probs"])
                                for r in runs[k]["days"]], expected=True).gauc for k in keys]
        out["expected_ceiling"] = float(np.mean(ceiling))
        out["probe_rows"] = int(np.mean([sum(r["probe"]["probs"].size for r in runs[k]["days"]) for k in keys]))
    return out


def _plot(summary: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ecdctr_pipeline.tiers.variants import get

    rows = summary["rows"]
    m = "expected" if summary["metric"] == "expected" else "gauc"
    what = ("expected GAUC on the probe holdouts" if m == "expected" else "GAUC") + " (mean ± sd over replicates)"
    mean, sd = [r[f"{m}_mean"] for r in rows], [r[f"{m}_std"] for r in rows]
    if summary["table"] == "fig4":  # a curve over the dimension, as the paper draws it
        fig, ax = plt.subplots(figsize=(6, 3.6))
        dims = [int(r["variant"].rsplit("_", 1)[1]) for r in rows]
        ax.errorbar(dims, mean, yerr=sd, marker="o", capsize=3)
        ax.set_xscale("log", base=2)
        ax.set_xticks(dims, [str(d) for d in dims])
        ax.set_xlabel("TPM embedding dimension")
        ax.set_ylabel(what, fontsize=8)
    else:
        fig, ax = plt.subplots(figsize=(7, 0.5 * len(rows) + 1.6))
        ax.barh([get(r["variant"]).label for r in rows], mean, xerr=sd, color="tab:blue", alpha=0.8, capsize=3)
        lo, hi = min(a - b for a, b in zip(mean, sd)), max(a + b for a, b in zip(mean, sd))
        if "expected_ceiling" in summary and m == "expected":
            ax.axvline(summary["expected_ceiling"], color="tab:green", ls="--", label="the true probabilities")
            hi = max(hi, summary["expected_ceiling"])
            ax.legend(loc="lower right", fontsize=8)
        ax.axvline(0.5, color="grey", lw=0.8)
        ax.set_xlim(min(lo - 0.02, 0.49), hi + 0.02)
        ax.set_xlabel(what)
        ax.grid(axis="x", alpha=0.3)
    ax.set_title(summary["title"], fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _plot_curves(summary: dict, path: Path) -> Path | None:
    """Each trained variant's mean loss curves (validation solid, training dashed) by epoch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ecdctr_pipeline.tiers.variants import get

    rows = [r for r in summary["rows"] if r.get("loss_curve")]
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(7, 4))
    for i, r in enumerate(rows):
        colour = f"C{i % 10}"
        label = get(r["variant"]).label
        if r.get("val_loss_curve"):
            ax.plot(range(1, len(r["val_loss_curve"]) + 1), r["val_loss_curve"], color=colour, marker="o", ms=3,
                    label=f"{label} (validation)")
        ax.plot(range(1, len(r["loss_curve"]) + 1), r["loss_curve"], color=colour, ls="--", alpha=0.7,
                label=f"{label} (training)")
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch (mean over the fits that ran it)")
    ax.set_ylabel("log loss")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    ax.set_title(f"{summary['title']}: loss curves of the fine-tuned variants", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _share(x: float | None) -> str:
    return "—" if x is None else f"{x:.0%}"


def _signed(x: float | None) -> str:
    return "—" if x is None else f"{x:+.4f}"


def _interval(x: dict) -> str:
    return "— (1 replicate)" if x["ci_low"] is None else f"[{x['ci_low']:+.4f}, {x['ci_high']:+.4f}]"


def write_table(summary: dict, out_dir: Path, *, scale: str, seconds: float) -> Path:
    """``table<key>.md``, ``.png`` and ``.json`` under ``out_dir``."""
    from ecdctr_pipeline.evaluation import paper
    from ecdctr_pipeline.tiers.variants import get

    key = summary["table"]
    has_paper = key in paper.PAPER

    def paper_gauc(v: str) -> tuple[str, ...]:
        if not has_paper:
            return ()
        f = paper.figure(key, v)
        return ("—" if f is None else f"{f:.4f}",)

    out_dir.mkdir(parents=True, exist_ok=True)
    name = report_name(summary["table"])
    png = _plot(summary, out_dir / f"{name}.png")
    curves = _plot_curves(summary, out_dir / f"{name}_loss.png")
    probed = summary["metric"] == "expected"
    reps = summary["replicates"]
    t = markdown_table(
        ("variant", "how it is trained", "epochs used (mean)", "samples seen (mean)", "GAUC (mean ± sd)")
        + (("expected GAUC, probe (mean ± sd)",) if probed else ())
        + (f"lift vs {get(summary['reference']).label} [95% CI over replicates]",)
        + ((f"the paper's GAUC ({paper.PAPER[key][0]})",) if has_paper else ()),
        [(get(r["variant"]).label, get(r["variant"]).what,
          "—" if r["epochs_used"] is None else f"{r['epochs_used']:.1f}",
          "—" if r["samples_seen"] is None else f"{r['samples_seen']:,.0f}",
          f"{r['gauc_mean']:.4f} ± {r['gauc_std']:.4f}")
         + ((f"{r['expected_mean']:.4f} ± {r['expected_std']:.4f}",) if probed else ())
         + ("reference" if r["lift_vs_reference"] is None else
            f"{_signed(r['lift_vs_reference']['lift'])} {_interval(r['lift_vs_reference'])}",)
         + paper_gauc(r["variant"])
         for r in summary["rows"]])
    o = markdown_table(("the ordering", "the paper's lift", "mean lift", "95% CI over replicates",
                        "sd over replicates", "p (Holm)", "MDE (80% power)", f"replicates to resolve {TARGET_EFFECT}",
                        "verdict"),
                       [(f"{get(x['a']).label} {x['op']} {get(x['b']).label}",
                         _signed(paper.lift(key, x["a"], x["b"])), _signed(x["lift"]), _interval(x),
                         "—" if x["sd"] is None else f"{x['sd']:.4f}",
                         "—" if x["p_holm"] is None else f"{x['p_holm']:.3g}",
                         "—" if x["mde"] is None else f"{x['mde']:.4f}",
                         "—" if x["replicates_for_target"] is None else str(x["replicates_for_target"]),
                         x["verdict"]) for x in summary["orderings"]])
    fitted = [r for r in summary["rows"] if r.get("fits")]
    conv = ("" if not fitted else "## Convergence\n\n" + markdown_table(
        ("variant", "fits", "validation clicks (mean)", "stopped by early stopping", "validation loss: first → best epoch",
         "BatchNorm gap before settling (median, sd units)"),
        [(get(r["variant"]).label, str(r["fits"]),
          "—" if r.get("val_clicks_mean") is None else f"{r['val_clicks_mean']:.0f}", _share(r["stopped_early"]),
          "—" if not r.get("val_loss_curve") else
          f"{r['val_loss_curve'][0]:.4f} → {min(r['val_loss_curve']):.4f}",
          "—" if r.get("bn_gap_median") is None else f"{r['bn_gap_median']:.2f}") for r in fitted])
        + "\n\nA fit that early stopping ended had stopped improving on its validation slice before its epoch "
          "budget; the rest used every epoch. BatchNorm statistics are settled on the training rows after "
          "every fit (`training.bn_settle_rows`); the gap is how far the moving averages were from them.\n\n"
        + (f"![loss curves]({curves.name})\n\n" if curves else ""))
    missing = "".join(f"- not built: {x}\n" for x in summary["not_built"])
    worlds = sorted({r["world"] for r in reps})
    seeds = sorted({r["seed"] for r in reps})
    metric = (f"the expected GAUC on probe holdouts (~{summary['probe_rows']:,} rows per replicate, "
              f"the true probabilities score {summary['expected_ceiling']:.4f})" if probed else
              "the observed GAUC (no probe holdout)")
    mde = ("the minimum detectable effect at 80% power is "
           + (f"**{summary['mde']:.4f}** GAUC (the largest over the orderings)" if summary["mde"] is not None
              else "undefined (one replicate)"))
    md = (f"# {summary['title']} — scale {scale}, {len(reps)} replicates\n\n"
          + (f"Replicates: worlds {', '.join(map(str, worlds))} × training seeds {', '.join(map(str, seeds))}; "
             if None not in worlds else
             f"Replicates: training seeds {', '.join(map(str, seeds))} on the store's own log (one world); ")
          + f"A-CTR days {summary['days'][0]} .. {summary['days'][-1]} in each; {summary['groups']} (replicate, "
          f"day, user) groups scored (GAUC coverage {summary['coverage']:.2f} of the holdout rows); "
          f"{seconds:.0f} s on this machine.\n\nVerdicts use {metric}; {mde}.\n\n"
          + (f"The TPM set's user vectors explain R² {summary['tpm_taste_r2']['mean']:.3f} of the simulator's "
             f"true long-term taste (out-of-fold ridge, mean over its months and the replicates).\n\n"
             if "tpm_taste_r2" in summary else "")
          + f"{t}\n\n![{summary['title']}]({png.name})\n\n## Orderings\n\n{o}\n\n{conv}{missing}"
          f"{_tuning(summary)}"
          f"\nProtocol: `ecdctr_pipeline/app/experiments.py` — the unit is the replicate (world × training "
          f"seed); paired t test over replicates, Holm across the table's orderings at α = {summary['alpha']}; "
          f"'≥' is non-inferiority within {summary['margin']} GAUC; '~' is an A/A check.\n")
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
            f"on the last {t['validation_days']} day(s) of the ad training window"
            + (f", grown until it holds {t['validation_min_clicks']} clicks (at most half the window)"
               if t.get("validation_min_clicks") else "")
            + f" (patience {t['patience']}, best "
            f"epoch kept), learning rate {a['learning_rate']}, batch {a['batch_size']} (profile `{t['profile']}`).\n")


def _probe_store(world_store: ArtifactStore, world, day: dt.date, multiple: int, folder: Path, *,
                 settings: Settings) -> Probe:
    """A store holding ``world_store``'s raw tables with the ad rows of ``day`` (an A-CTR day's
    holdout day) replaced by a probe of
    ``multiple`` times the day's volume (day-start features: the rows before the day are what the
    probe rows' features are computed from, exactly as for the day's own rows)."""
    from ecdctr_pipeline.app.scratch import copy_inputs
    from ecdctr_pipeline.data.ingest import validate, write_raw
    from ecdctr_pipeline.data.store import open_store

    copy_inputs(world_store, folder, ("raw", "empty_days"))
    s = settings.model_copy(deep=True)
    s.store.root = f"file://{folder}"
    store = open_store(s.store)
    schema = settings.features.feature_schema()
    table, probs = world.probe("ad", day, multiple)
    clicks = np.asarray(table["click"])
    now = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), dt.timezone.utc)
    write_raw(store, "ad", validate(table, None, now=now, domain="ad", schema=schema), schema=schema)
    return Probe(store, probs, clicks)


def training_seed(world: int, seed: int) -> int:
    """The seed every model of replicate (``world``, ``--train-seeds`` entry ``seed``) trains
    with: drawn from both, so that replicates are independent in their training randomness too.
    (With the entry itself as the seed, every world's Target-only started from the same initial
    weights: a pilot's A/A pair — seed 0 against seed 1000 on 5 worlds — then "differed" by
    +0.013 GAUC, p 0.008, the same two initialisations compared five times.)"""
    return int(np.random.SeedSequence([int(world), int(seed), 31]).generate_state(1)[0] % (2**31 - 1))


def tpm_taste_r2(world, tables, *, folds: int = 5, ridge: float = 1.0) -> dict:
    """How much of the simulator's true long-term taste (``World.user_long``) the TPM's user
    vectors carry: per month of the set, the out-of-fold R² of a ridge regression of the taste on
    the month's vectors (users with a vector that month; ``folds``-fold cross-validation)."""
    per_month = {}
    for j, month in enumerate(tables.months):
        x = np.asarray(tables.user_vectors[:, j, :], np.float64)
        seen = np.any(x != 0, axis=1)
        ids = np.asarray(tables.user_ids)[seen]
        x, y = x[seen], np.asarray(world.user_long, np.float64)[ids]
        if len(ids) < 2 * folds:
            continue
        fold = np.random.default_rng(0).permutation(len(ids)) % folds
        sse = 0.0
        for f in range(folds):
            tr, te = fold != f, fold == f
            xt = np.c_[x[tr], np.ones(tr.sum())]
            w = np.linalg.solve(xt.T @ xt + ridge * np.eye(xt.shape[1]), xt.T @ y[tr])
            sse += float(((np.c_[x[te], np.ones(te.sum())] @ w - y[te]) ** 2).sum())
        sst = float(((y - y.mean(axis=0)) ** 2).sum())
        per_month[str(month)] = 1.0 - sse / sst
    return {"per_month": per_month, "mean": float(np.mean(list(per_month.values()))) if per_month else None}


def run_tables(base: Settings, tables: list[Table], *, worlds: list[int], train_seeds: list[int], scale: str,
               monday: str, days: int, out_dir: Path, validation_days: int = 2, max_epochs: int = 10,
               probe_multiple: int = 20, planted: float = 0.1, margin: float = 0.002, patience: int = 3,
               validation_min_clicks: int = 100, on_store: ArtifactStore | None = None) -> dict:
    """Simulate each world into a scratch store, extract its features once, train the union of
    the tables' variants for each training seed on the same days (a scratch copy per seed),
    write each table. Every fine-tuned variant trains up to ``max_epochs`` epochs with early
    stopping on the last ``validation_days`` days of its ad window (the same tuning for all).
    Returns ``{"tables": {table key: summary}, "seconds": …}``.

    ``on_store``: the same protocol on that store's own log instead of simulated worlds (a real
    log): its features are extracted there once (as the DAGs would), each training seed trains in
    a scratch copy of its tables, replicates are the training seeds, the metric is the observed
    GAUC (no true probabilities: no probes, no planted variant, no TPM taste)."""
    from ecdctr_pipeline.app.scratch import copy_inputs
    from ecdctr_pipeline.core.report import progress
    from ecdctr_pipeline.data.simulate import World, get_scale, simulate
    from ecdctr_pipeline.data.store import open_store
    from ecdctr_pipeline.tiers import variants as registry

    if on_store is not None:
        derived = [v for t in tables for v in t.variants if registry.get(v).derived_from]
        if derived or worlds:
            raise EcdctrError("experiments on a store's own log: no --worlds (the log is the one world) and no "
                              f"variant that needs a simulator's true probabilities ({', '.join(derived) or 'none'})")
        worlds, probe_multiple = [None], 0
    if not worlds or not train_seeds or len(set(worlds)) != len(worlds) or len(set(train_seeds)) != len(train_seeds):
        raise EcdctrError(f"experiments: --worlds {worlds} and --train-seeds {train_seeds}: distinct integers, "
                          "at least one each")
    if probe_multiple < 0 or patience < 1:
        raise EcdctrError(f"experiments: --probe-multiple {probe_multiple} (0: off, or more), --patience {patience} "
                          "(1 or more)")
    t0 = time.perf_counter()
    base = base.model_copy(deep=True)
    base.training.validation_days = validation_days
    base.training.validation_min_clicks = validation_min_clicks
    base.training.early_stopping_patience = patience
    base.actr.epochs = max_epochs
    monday_d = calendar.parse_date(monday, what="--monday")
    cal = base.calendar
    p = calendar.cpm_plan(monday_d, cal)  # validates the Monday
    last = monday_d + dt.timedelta(days=days - 1)
    day_list = actr_days(base, monday_d, days)
    wanted = list(dict.fromkeys(v for t in tables for v in t.variants))
    needs = set().union(*(registry.get(v).needs for v in wanted))
    months = max(cal.tpm_train_months, registry.KEEP_MONTHS if "keep_tpm" in needs else 0)
    first = calendar.tpm_plan(p.embedding_set, cal.model_copy(update={"tpm_train_months": months})).data_window.start
    schema = base.features.feature_schema()
    runs: dict[str, dict] = {}
    work = Path(tempfile.mkdtemp(prefix="ecdctr-exp-"))
    try:
        for w in progress(worlds, desc="worlds", unit="world"):
            world = truth = probes = None
            if w is None:  # the store's own log
                world_store = on_store
                extract_inputs(base, world_store, monday_d, days, needs)
            else:
                ws = base.model_copy(deep=True)
                ws.store.root = f"file://{work / f'world-{w}'}"
                world_store = open_store(ws.store)
                simulate(world_store, first, last - dt.timedelta(days=1), scale, w, progress=False, schema=schema)
                extracted = extract_inputs(ws, world_store, monday_d, days, needs)
                world = World(get_scale(scale), w, schema)
                # the day each A-CTR day holds out (the day before it)
                held = {d.isoformat(): calendar.actr_plan(d, cal).holdout_window.start for d in day_list}
                truth = {k: Probe(None, probs, np.asarray(rows["click"]))
                         for k, (rows, probs) in ((k, world.day_with_truth("ad", h)) for k, h in held.items())}
                probes = ({k: _probe_store(world_store, world, h, probe_multiple, work / f"probe-{w}-{k}",
                                           settings=extracted) for k, h in held.items()}
                          if probe_multiple else None)
            for seed in train_seeds:
                folder = work / f"world-{w}-seed-{seed}"
                copy_inputs(world_store, folder)
                settings = base.model_copy(deep=True)
                settings.store.root = f"file://{folder}"
                ts = training_seed(0 if w is None else w, seed)
                settings.tpm.seed = settings.cpm.seed = settings.actr.seed = ts
                rows, week = run_days(settings, open_store(settings.store), monday_d, days, wanted, truth=truth,
                                      probes=probes, planted=planted)
                key = f"s{seed}" if w is None else f"w{w}-s{seed}"
                runs[key] = {"world": w, "seed": seed, "training_seed": ts, "days": rows}
                if world is not None and "cpm_loaded" in week:  # the TPM set: does it carry the world's taste?
                    runs[key]["tpm_taste_r2"] = tpm_taste_r2(world, week["cpm_loaded"][1])
                del week
                shutil.rmtree(folder, ignore_errors=True)
            if w is not None:
                for d in day_list:
                    shutil.rmtree(work / f"probe-{w}-{d}", ignore_errors=True)
                shutil.rmtree(work / f"world-{w}", ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    seconds = round(time.perf_counter() - t0, 1)
    out = {}
    for t in tables:
        s = summarize(t, runs, margin=margin)
        s["tuning"] = {"validation_days": validation_days, "validation_min_clicks": validation_min_clicks,
                       "max_epochs": max_epochs,
                       "patience": base.training.early_stopping_patience, "actr": base.actr.model_dump(),
                       "cpm": base.cpm.model_dump(), "tpm": base.tpm.model_dump(), "profile": base.profile,
                       "probe_multiple": probe_multiple, "planted": planted}
        s["markdown"] = str(write_table(s, out_dir, scale=scale, seconds=seconds))
        out[t.key] = s
    return {"tables": out, "seconds": seconds}
