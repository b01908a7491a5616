"""``ecdctr replicate``: E-CDCTR against Target-only on *your* store, over several training
seeds, with intervals whose unit is the seed.

Why the seed. The days of one run share one TPM set, one CPM and one draw of initial weights:
an interval over days (or over the (day, user) groups of the paired bootstrap) measures how the
holdout rows vary around *that* run, not how the comparison varies when the models are trained
again. Both can exclude 0 with opposite signs for two seeds (issue 29 measured ±0.09 GAUC on a
real log). A decision about the transfer needs replicates: the same windows trained again with
other seeds, the lift of each replicate pooled over the days, and a t interval over replicates.

Protocol (:func:`run`). The store's raw tables are the user's (``ingest``); features are
extracted there once (as the DAGs would). Each replicate trains in a scratch store holding a
copy of the raw and feature tables (hard links on a local store), so nothing is published to
the user's store. A configuration gives each tier its own seed — TPM, CPM, A-CTR (E-CDCTR's
fine-tuning) and Target-only. ``--vary all`` runs every seed on all four tiers together (the
replicates of the decision); ``--vary tpm`` (``cpm``, ``actr``, ``target_only``) changes that
tier's seed only, the others staying at the first seed: the variance of the lift over those
replicates is that tier's share. Models are trained once per distinct input: Target-only per
(its seed, day), E-CDCTR per (TPM, CPM, A-CTR seed, day), the week per (TPM, CPM seed). Scores of
a day are on the same holdout rows for every model, so a replicate's lift is paired.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ecdctr_pipeline.evaluation.protocol import seed_interval, seeds_needed  # noqa: F401 (re-exported)
from ecdctr_pipeline.core import calendar, paths
from ecdctr_pipeline.core.errors import EcdctrError
from ecdctr_pipeline.core.settings import Settings
from ecdctr_pipeline.app.scratch import COPIED, copy_inputs  # noqa: F401 (COPIED re-exported)
from ecdctr_pipeline.data.store import ArtifactStore

log = logging.getLogger(__name__)

TIERS = ("tpm", "cpm", "actr", "target_only")
VARY = ("all",) + TIERS
SCORES = "replicates.scores.npz"  # beside the report: every model's scores on every holdout


@dataclass(frozen=True)
class Config:
    """The training seed of each tier."""

    tpm: int
    cpm: int
    actr: int
    target_only: int

    def label(self) -> str:
        return f"tpm {self.tpm} · cpm {self.cpm} · actr {self.actr} · target-only {self.target_only}"


def configs(seeds: list[int], vary: list[str]) -> dict[str, list[Config]]:
    """The configurations of each ``vary`` entry (see the module docstring)."""
    if not seeds or len(set(seeds)) != len(seeds):
        raise EcdctrError(f"--seeds {seeds}: distinct integers, at least one")
    bad = [v for v in vary if v not in VARY]
    if bad or not vary:
        raise EcdctrError(f"--vary {','.join(vary)}: expected one or more of {', '.join(VARY)}")
    base = seeds[0]
    out: dict[str, list[Config]] = {}
    for v in vary:
        if v == "all":
            out[v] = [Config(s, s, s, s) for s in seeds]
        else:
            out[v] = [Config(**{t: (s if t == v else base) for t in TIERS}) for s in seeds]
    return out


def _seeded(settings: Settings, store_root: str, c: Config, *, tier_seed: int | None = None) -> Settings:
    s = settings.model_copy(deep=True)
    s.store.root = store_root
    s.tpm.seed, s.cpm.seed = c.tpm, c.cpm
    s.actr.seed = c.actr if tier_seed is None else tier_seed
    return s


def run(settings: Settings, store: ArtifactStore, *, monday: dt.date, days: int, seeds: list[int], vary: list[str],
        progress: bool = True) -> dict:
    """Every configuration of ``vary`` on ``days`` A-CTR days from ``monday`` (see the module
    docstring). Returns the raw results (per configuration and day: both models' pooled GAUC
    inputs) summarised by :func:`summarize`."""
    from ecdctr_pipeline.app.experiments import actr_days
    from ecdctr_pipeline.core.report import progress as bar
    from ecdctr_pipeline.data import extract
    from ecdctr_pipeline.data.store import open_store
    from ecdctr_pipeline.tiers import variants as registry

    t0 = time.perf_counter()
    plan = calendar.cpm_plan(monday, settings.calendar)
    day_list = actr_days(settings, monday, days)
    by_vary = configs(seeds, vary)
    # features once, in the user's store, as the DAGs extract them (idempotent for their windows)
    extract.extract_tpm(settings, store, calendar.tpm_plan(plan.embedding_set, settings.calendar).month)
    extract.extract_complete(settings, store, "natural", monday)
    for d in day_list:
        extract.extract_complete(settings, store, "ad", d)
    work = Path(tempfile.mkdtemp(prefix="ecdctr-replicates-"))  # under TMPDIR
    weeks: dict[tuple[int, int], tuple[Settings, ArtifactStore, dict]] = {}
    scores: dict[tuple, tuple] = {}  # (model key, day) -> (labels, users, scores, info)
    all_configs = list(dict.fromkeys(c for cs in by_vary.values() for c in cs))
    try:
        for c in (bar(all_configs, desc="replicates", unit="config") if progress else all_configs):
            key = (c.tpm, c.cpm)
            if key not in weeks:
                folder = work / f"tpm{c.tpm}-cpm{c.cpm}"
                copy_inputs(store, folder)
                s = _seeded(settings, f"file://{folder}", c)
                scratch = open_store(s.store)
                weeks[key] = (s, scratch, registry.prepare_week(s, scratch, monday, {"cpm"}))
            s, scratch, week = weeks[key]
            for d in day_list:
                for variant, mkey, seed in (("target_only", ("target_only", c.target_only), c.target_only),
                                            ("ecdctr", ("ecdctr", c.tpm, c.cpm, c.actr), c.actr)):
                    if (mkey, d) in scores:
                        continue
                    t1 = time.perf_counter()
                    labels, sc, users, info = registry.get(variant).score(
                        _seeded(s, s.store.root, c, tier_seed=seed), scratch, d, week)
                    info["seconds"] = round(time.perf_counter() - t1, 2)
                    ref = next((v for (k, dd), v in scores.items() if dd == d), None)
                    if ref is not None and not (np.array_equal(ref[0], labels) and np.array_equal(ref[1], users)):
                        raise EcdctrError(f"replicate: {variant} scored other holdout rows of {d} than the first model")
                    scores[(mkey, d)] = (labels, users, sc, info)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    runs = {v: [{"config": asdict(c), "days": [
        {"day": d.isoformat(), "labels": scores[(("target_only", c.target_only), d)][0],
         "users": scores[(("target_only", c.target_only), d)][1],
         "target_only": scores[(("target_only", c.target_only), d)][2],
         "ecdctr": scores[(("ecdctr", c.tpm, c.cpm, c.actr), d)][2],
         "training": {"target_only": scores[(("target_only", c.target_only), d)][3],
                      "ecdctr": scores[(("ecdctr", c.tpm, c.cpm, c.actr), d)][3]}} for d in day_list]}
        for c in cs] for v, cs in by_vary.items()}
    week_info = {f"tpm {k[0]} · cpm {k[1]}": {"cpm": w[2].get("cpm_info"), "tpm": w[2].get("tpm_info")}
                 for k, w in weeks.items()}
    return {"monday": monday.isoformat(), "days": [d.isoformat() for d in day_list], "seeds": seeds,
            "runs": runs, "weeks": week_info, "models_trained": len(scores), "seconds": round(time.perf_counter() - t0, 1)}


def summarize(result: dict, *, n_boot: int = 2000) -> dict:
    """Per configuration: both models' GAUC pooled over the days, the lift and its (wrong-unit)
    interval over (day, user) groups; per ``vary``: the lift's mean, sd and t interval over
    replicates, and each tier's share of the lift's variance."""
    from ecdctr_pipeline.evaluation.metrics import paired_gauc_lift, pooled_gauc

    out: dict = {"monday": result["monday"], "days": result["days"], "seeds": result["seeds"], "vary": {}}
    for v, cs in result["runs"].items():
        reps = []
        for r in cs:
            d = r["days"]
            g = {m: pooled_gauc([(x["labels"], x["users"], x[m]) for x in d]) for m in ("target_only", "ecdctr")}
            within = paired_gauc_lift([(x["labels"], x["users"], x["ecdctr"], x["target_only"]) for x in d],
                                      n_boot=n_boot)
            wins = sum(pooled_gauc([(x["labels"], x["users"], x["ecdctr"])]).gauc
                       > pooled_gauc([(x["labels"], x["users"], x["target_only"])]).gauc for x in d)
            epochs = {m: [x["training"][m].get("epochs_run") for x in d] for m in ("target_only", "ecdctr")}
            reps.append({"config": r["config"], "gauc_target_only": g["target_only"].gauc, "gauc_ecdctr": g["ecdctr"].gauc,
                         "lift": g["ecdctr"].gauc - g["target_only"].gauc, "groups": g["ecdctr"].users_scored,
                         "within_ci": [within["ci_low"], within["ci_high"]], "day_wins": int(wins), "n_days": len(d),
                         "epochs": epochs})
        lifts = [x["lift"] for x in reps]
        noise = holdout_variance(cs, n_boot=n_boot)
        out["vary"][v] = {"replicates": reps, "lift": seed_interval(lifts), "holdout": noise,
                          "gauc_ecdctr": seed_interval([x["gauc_ecdctr"] for x in reps]),
                          "gauc_target_only": seed_interval([x["gauc_target_only"] for x in reps]),
                          "positive": sum(x > 0 for x in lifts), "negative": sum(x < 0 for x in lifts)}
    tiers = {t: out["vary"][t]["lift"]["sd"] ** 2 for t in TIERS if t in out["vary"] and out["vary"][t]["lift"]["sd"] is not None}
    total = sum(tiers.values())
    out["variance_share"] = {t: {"variance": var, "share": (var / total if total else None)} for t, var in tiers.items()}
    if "all" in out["vary"] and out["vary"]["all"]["lift"]["sd"]:
        a = out["vary"]["all"]["lift"]
        out["seeds_needed"] = {"for the measured lift": seeds_needed(a["sd"], abs(a["mean"])),
                               "for a 0.01 GAUC lift": seeds_needed(a["sd"], 0.01)}
    return out


def holdout_variance(replicates: list[dict], *, n_boot: int = 2000, seed: int = 0) -> dict | None:
    """How much of the lifts' variance over these replicates the holdout's finite users explain.

    Each replicate's lift is a weighted mean over the same (day, user) groups of the groups' AUC
    differences, ``lift_i = mean_g(mu_i + e_ig)``: ``mu_i`` is the lift that replicate's models
    would have on all users, ``e_ig`` how group g departs from it. Two replicates' lifts differ by
    ``mu_i - mu_j`` and by the groups' departures, which differ from model to model (seeds
    reorder which users a model ranks well) and shrink as the holdout grows. Resampling the groups
    (the same draw for every replicate) and taking the variance over replicates of each draw's
    lifts around their own, averaged over draws, estimates the second part; what the observed
    variance has beyond it is the seed's effect on the transfer itself (``mu``). ``None`` with
    fewer than two replicates."""
    from ecdctr_pipeline.evaluation.metrics import user_aucs

    if len(replicates) < 2:
        return None
    deltas, w = [], None
    for r in replicates:
        d_i, w_i = [], []
        for x in r["days"]:
            e, we, _ = user_aucs(x["labels"], x["ecdctr"], x["users"])
            t, _, _ = user_aucs(x["labels"], x["target_only"], x["users"])
            d_i.append(e - t), w_i.append(we)
        deltas.append(np.concatenate(d_i))
        w_i = np.concatenate(w_i)
        if w is not None and not np.array_equal(w, w_i):
            raise EcdctrError("replicate: the replicates were scored on different (day, user) groups")
        w = w_i
    dw = np.stack(deltas) * w  # replicates x groups
    lifts = dw.sum(1) / w.sum()
    rng = np.random.default_rng(seed)
    var = np.empty(n_boot)
    for i in range(0, n_boot, 100):
        k = min(100, n_boot - i)
        counts = rng.multinomial(w.size, np.full(w.size, 1.0 / w.size), size=k)  # k x groups
        boot = (counts @ dw.T) / (counts @ w)[:, None]  # k x replicates
        var[i:i + k] = np.var(boot - lifts, axis=1, ddof=1)
    observed = float(np.var(lifts, ddof=1))
    h = float(var.mean())
    return {"groups": int(w.size), "observed_variance": observed, "holdout_variance": h,
            "holdout_share": (h / observed if observed > 0 else None),
            "seed_variance": max(observed - h, 0.0)}


def save_scores(result: dict, path: Path) -> Path:
    """Every model's scores on every holdout (``replicates.scores.npz``): the report can be
    recomputed (:func:`load_scores`, ``ecdctr replicate --from-scores``) without training again."""
    arrays, index = {}, {k: v for k, v in result.items() if k != "runs"} | {"runs": {}}
    for v, cs in result["runs"].items():
        index["runs"][v] = []
        for i, r in enumerate(cs):
            days = []
            for j, x in enumerate(r["days"]):
                for k in ("labels", "users", "target_only", "ecdctr"):
                    arrays[f"{v}.{i}.{j}.{k}"] = np.asarray(x[k])
                days.append({"day": x["day"], "training": x["training"]})
            index["runs"][v].append({"config": r["config"], "days": days})
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial.npz")
    np.savez_compressed(tmp, index=np.frombuffer(json.dumps(index, default=_jsonable).encode(), dtype=np.uint8),
                        **arrays)
    os.replace(tmp, path)
    return path


def load_scores(path: Path) -> dict:
    """The ``result`` :func:`save_scores` wrote (what :func:`summarize` takes)."""
    try:
        z = np.load(path)
        index = json.loads(bytes(z["index"]).decode())
        for v, cs in index["runs"].items():
            for i, r in enumerate(cs):
                for j, x in enumerate(r["days"]):
                    x.update({k: z[f"{v}.{i}.{j}.{k}"] for k in ("labels", "users", "target_only", "ecdctr")})
    except (OSError, ValueError, KeyError) as exc:
        raise EcdctrError(f"replicate --from-scores {path}: not a scores file written by `ecdctr replicate` ({exc})") from None
    return index


def _fmt_interval(x: dict) -> str:
    if x["sd"] is None:
        return f"{x['mean']:+.4f} (one replicate: no interval)"
    return f"{x['mean']:+.4f} ± {x['sd']:.4f} [{x['ci_low']:+.4f}, {x['ci_high']:+.4f}]"


def write_report(summary: dict, out_dir: Path, *, title: str, context: str = "") -> Path:
    """``replicates.md``, ``.png`` and ``.json`` under ``out_dir``."""
    from ecdctr_pipeline.core.report import markdown_table

    out_dir.mkdir(parents=True, exist_ok=True)
    png = _plot(summary, out_dir / "replicates.png")
    rows = []
    for v, s in summary["vary"].items():
        for r in s["replicates"]:
            c = r["config"]
            rows.append((v, f"{c['tpm']}/{c['cpm']}/{c['actr']}/{c['target_only']}", f"{r['gauc_ecdctr']:.4f}",
                         f"{r['gauc_target_only']:.4f}", f"{r['lift']:+.4f}",
                         f"[{r['within_ci'][0]:+.4f}, {r['within_ci'][1]:+.4f}]", f"{r['day_wins']}/{r['n_days']}",
                         _epochs(r["epochs"])))
    per = markdown_table(("seeds varied", "seeds tpm/cpm/actr/target-only", "E-CDCTR GAUC", "Target-only GAUC",
                          "lift", "interval over (day, user) groups — one training run", "days won",
                          "epochs E-CDCTR / Target-only"), rows)
    agg = markdown_table(("seeds varied", "replicates", "E-CDCTR GAUC mean ± sd", "Target-only GAUC mean ± sd",
                          "lift mean ± sd [95% t interval over replicates]", "lifts > 0 / < 0"),
                         [(v, s["lift"]["n"], f"{s['gauc_ecdctr']['mean']:.4f} ± {s['gauc_ecdctr']['sd'] or 0:.4f}",
                           f"{s['gauc_target_only']['mean']:.4f} ± {s['gauc_target_only']['sd'] or 0:.4f}",
                           _fmt_interval(s["lift"]), f"{s['positive']} / {s['negative']}")
                          for v, s in summary["vary"].items()])
    noise_rows = [(v, f"{h['observed_variance']:.2e}",
                   f"{h['holdout_variance']:.2e} ({'—' if h['holdout_share'] is None else format(h['holdout_share'], '.0%')})",
                   f"{h['seed_variance']:.2e}")
                  for v, s in summary["vary"].items() if (h := s.get("holdout"))]
    noise = "" if not noise_rows else markdown_table(
        ("seeds varied", "variance of the lift over replicates", "of it, the holdout's groups alone",
         "beyond the holdout (the seed's effect on the transfer)"),
        noise_rows)
    share = markdown_table(("tier whose seed varies", "variance of the lift", "share"),
                           [(t, f"{x['variance']:.2e}", "—" if x["share"] is None else f"{x['share']:.0%}")
                            for t, x in summary.get("variance_share", {}).items()])
    trained = summary.get("training")
    trained_md = "" if not trained else "Training settings: " + "; ".join(
        f"`{k}` {v}" for k, v in trained.items()) + ".\n\n"
    need = summary.get("seeds_needed")
    need_md = "" if not need else (
        "\n\nReplicates a decision needs (95% t interval half-width ≤ the effect, at the measured sd of "
        "`all`): " + "; ".join(f"{k}: {v if v else 'more than 1000'}" for k, v in need.items()) + ".")
    md = (f"# {title}\n\n{context}A-CTR days {summary['days'][0]} .. {summary['days'][-1]} (CPM Monday "
          f"{summary['monday']}); seeds {', '.join(map(str, summary['seeds']))}. A replicate is one training of "
          f"the week's TPM and CPM and of each day's models with the seeds shown; its lift is E-CDCTR's GAUC "
          f"minus Target-only's, pooled over the days ((day, user) groups).\n\n"
          f"{trained_md}"
          f"## The lift over replicates (the unit is the training seed)\n\n{agg}\n\n"
          f"{_paper_line()}![replicates]({png.name})\n\n"
          f"## Where the variance comes from\n\nOne tier's seed varies, the others stay at seed "
          f"{summary['seeds'][0]}.\n\n{share}{need_md}\n\n"
          + ("" if not noise else
             "### How much of it the holdout's size explains\n\nThe replicates are scored on the same "
             "(day, user) groups; resampling the groups (one draw for all replicates) gives the variance "
             "over replicates that the finite holdout alone produces (seeds reorder which users a model "
             f"ranks well). The rest is the seed changing the transfer itself.\n\n{noise}\n\n")
          + f"## Every replicate\n\n{per}\n\n"
          f"The interval over (day, user) groups is that of a single training run (paired bootstrap): it "
          f"describes the holdout rows, not a retraining, and is shown to compare with the interval over "
          f"replicates.\n\nProtocol: `ecdctr_pipeline/app/replicates.py`.\n")
    path = out_dir / "replicates.md"
    path.write_text(md)
    (out_dir / "replicates.json").write_text(json.dumps(summary, indent=2, default=_jsonable))
    return path


def training_settings(settings: Settings) -> dict:
    """What the report states about how every replicate trained."""
    t, c, a, tr = settings.tpm, settings.cpm, settings.actr, settings.training
    return {"tpm": f"lr {t.learning_rate}, batch {t.batch_size}, {t.epochs_per_month} epoch(s) a month",
            "cpm": f"lr {c.learning_rate}, batch {c.batch_size}, {c.epochs} epoch(s)",
            "actr / target-only": f"lr {a.learning_rate}, batch {a.batch_size}, {a.epochs} epoch(s)",
            "early stopping": (f"last {tr.validation_days} day(s) of each window, patience {tr.early_stopping_patience}"
                               if tr.validation_days else "off (every epoch trained)")}


# the paper's Table 2 (E-CDCTR, Target-only GAUC on its industrial log, one training run, no
# interval): the figure a report puts beside ours
PAPER_TABLE2 = {"E-CDCTR": 0.6652, "Target-only": 0.6564}


def _paper_line() -> str:
    """The paper's own figure beside ours."""
    t2 = PAPER_TABLE2
    return (f"The paper (Table 2, its industrial log): E-CDCTR {t2['E-CDCTR']:.4f}, Target-only "
            f"{t2['Target-only']:.4f}, lift {t2['E-CDCTR'] - t2['Target-only']:+.4f} (no interval given).\n\n")


def _epochs(e: dict) -> str:
    def one(xs):
        xs = [x for x in xs if x is not None]
        return f"{np.mean(xs):.1f}" if xs else "budget"
    return f"{one(e['ecdctr'])} / {one(e['target_only'])}"


def _plot(summary: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = list(summary["vary"])
    fig, ax = plt.subplots(figsize=(7, 0.6 * len(groups) + 1.8))
    for i, v in enumerate(groups):
        s = summary["vary"][v]
        lifts = [r["lift"] for r in s["replicates"]]
        ax.scatter(lifts, [i] * len(lifts), color="tab:blue", zorder=3, label="replicate" if i == 0 else None)
        if s["lift"]["sd"] is not None:
            ax.plot([s["lift"]["ci_low"], s["lift"]["ci_high"]], [i, i], color="tab:orange", lw=3, alpha=0.7,
                    label="95% t interval" if i == 0 else None)
    ax.axvline(0, color="black", lw=0.8)
    ax.set_yticks(range(len(groups)), [f"vary {g}" for g in groups])
    ax.set_xlabel("lift: E-CDCTR GAUC − Target-only GAUC (pooled over the days)")
    ax.set_title("E-CDCTR vs Target-only over training seeds")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _jsonable(x):
    import dataclasses

    if dataclasses.is_dataclass(x):
        return dataclasses.asdict(x)
    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    return str(x)
