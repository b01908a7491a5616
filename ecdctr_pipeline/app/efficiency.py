"""``ecdctr efficiency``: the paper's efficiency claim, measured.

E-CDCTR's weekly training compute is the TPM run amortised over its month (it trains months
M-6 .. M-1 once a month) plus the weekly CPM (4 weeks of natural data and the 3 TPM months'
tables). The costly alternative re-pretrains the complete model on ``tpm_train_months`` (6)
calendar months of natural data every week. Both are trained here through the tiers' own step
definitions (TPM and CPM by ``tiers.train``, the alternative by ``cpm.resolve(...,
repretrain_months=N)``) with the settings' hyper-parameters, and both are then fine-tuned on the
same A-CTR days (A-CTR's window, policy and budget) and scored on the same holdouts.

Reported: samples processed (training rows x epochs run) and wall time of each training run (training only:
not its evaluation or publishing), per week, and
their ratio; GAUC of both A-CTR models per day and pooled, with the lift's paired bootstrap 95%
interval over (day, user) groups. Feature extraction is not counted on either side (the window's
features are computed the same way for both).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import shutil
import tempfile
import time
from pathlib import Path


from ecdctr_pipeline.app import experiments
from ecdctr_pipeline.core import calendar
from ecdctr_pipeline.core.errors import EcdctrError
from ecdctr_pipeline.core.report import markdown_table
from ecdctr_pipeline.core.settings import Settings
from ecdctr_pipeline.data import artifacts, extract
from ecdctr_pipeline.data.store import ArtifactStore

log = logging.getLogger(__name__)

WEEKS_PER_MONTH = 365.25 / 12 / 7  # a monthly run's cost is spread over this many weekly runs
GOAL_RATIO = 4.0  # the goal: E-CDCTR at least 4x cheaper ...
# ... at no worse GAUC: the lift's 95% interval must reach zero or above (not significantly worse)


def windows(settings: Settings, monday: dt.date, days: int, months: int):
    """The runs' windows: (CPM plan, TPM plan, re-pretraining plan, A-CTR days, first raw day)."""
    from ecdctr_pipeline.tiers import cpm

    cal = settings.calendar
    p = calendar.cpm_plan(monday, cal)
    tp = calendar.tpm_plan(p.embedding_set, cal)
    rp = cpm.repretrain_plan(p, months)
    f = settings.features
    history = max(f.history_days, max(f.counter_windows_days))
    first = min(tp.data_window.start, rp.window.start - dt.timedelta(days=history))
    return p, tp, rp, experiments.actr_days(settings, monday, days), first


def measure(settings: Settings, store: ArtifactStore, monday: str | dt.date, *, days: int = 2,
            months: int | None = None, variants: tuple[str, ...] = ()) -> tuple[dict, list[dict]]:
    """Train and score both sides on a store whose raw tables cover the windows (see
    :func:`windows`), through the experiments' runner: the TPM set and the CPM by ``tiers.train``
    (a published one is reused: its training time is the ``train_seconds`` its manifest
    recorded when it was trained), the re-pretrained model, and the ``ecdctr`` and
    ``repretrained`` variants (plus ``variants``) on each A-CTR day. Returns the report and the
    runner's per-day scores (for tables built from the same runs)."""
    from ecdctr_pipeline.evaluation.metrics import evaluate, paired_gauc_lift

    monday = calendar.parse_date(monday, what="--monday")
    months = months or settings.calendar.tpm_train_months
    p, tp, rp, actr_days, _ = windows(settings, monday, days, months)
    long = settings.model_copy(deep=True)
    long.calendar.cpm_window_days = rp.window.days
    log.info("efficiency: extracting the %d-day re-pretraining window %s", rp.window.days, rp.window)
    extract.extract_complete(long, store, "natural", monday)
    wanted = list(dict.fromkeys(("ecdctr", "repretrained", *variants)))
    runs, week = experiments.run_days(settings, store, monday, days, wanted, repretrain_months=months)

    def recorded(run) -> artifacts.Manifest:
        m = artifacts.read_manifest(store, run.artifact)
        if "train_seconds" not in m.extra:
            raise EcdctrError(f"efficiency: {run.artifact} records no train_seconds (published before they were "
                              f"recorded): retrain it with --force")
        return m

    tm, cm = recorded(week["tpm_info"]), recorded(week["cpm_info"])
    re_info = week["repretrained_info"]
    tpm_s, cpm_s = settings.tpm, settings.cpm
    steps = [
        {"step": f"TPM {tp.month} (months {tp.train_months[0]}..{tp.train_months[-1]}, one by one)",
         "side": "E-CDCTR", "runs_per_week": 1 / WEEKS_PER_MONTH,
         "rows": sum(v for k, v in tm.row_counts.items() if k.startswith("train_rows_")),
         "epochs": tpm_s.epochs_per_month, "seconds": tm.extra["train_seconds"]},
        {"step": f"CPM {monday} (natural {p.train_window}, TPM months {', '.join(map(str, p.embedding_months))})",
         "side": "E-CDCTR", "runs_per_week": 1.0, "rows": cm.row_counts["train"],
         "epochs": int(cm.metrics.get("epochs_run") or cpm_s.epochs), "seconds": cm.extra["train_seconds"]},
        {"step": f"complete model re-pretrained on natural {rp.train_window} ({months} months)",
         "side": "re-pretraining", "runs_per_week": 1.0, "rows": re_info["rows"],
         "epochs": int(re_info["metrics"].get("epochs_run") or cpm_s.epochs),
         "seconds": re_info["metrics"]["train_seconds"]},
    ]
    for s in steps:
        s["samples"] = s["rows"] * s["epochs"]
        s["weekly_samples"] = s["samples"] * s["runs_per_week"]
        s["weekly_seconds"] = s["seconds"] * s["runs_per_week"]
    ours = [s for s in steps if s["side"] == "E-CDCTR"]
    weekly = {"ecdctr_samples": sum(s["weekly_samples"] for s in ours),
              "ecdctr_seconds": sum(s["weekly_seconds"] for s in ours),
              "repretrain_samples": steps[-1]["weekly_samples"], "repretrain_seconds": steps[-1]["weekly_seconds"]}
    weekly["samples_ratio"] = weekly["repretrain_samples"] / weekly["ecdctr_samples"]
    weekly["seconds_ratio"] = weekly["repretrain_seconds"] / weekly["ecdctr_seconds"]

    per_day = []
    for r in runs:
        ma = evaluate(r["labels"], r["scores"]["ecdctr"], r["users"])
        mb = evaluate(r["labels"], r["scores"]["repretrained"], r["users"])
        per_day.append({"day": r["day"], "ecdctr_gauc": ma["gauc"], "repretrain_gauc": mb["gauc"],
                        "coverage": ma["gauc_coverage"], "users_scored": ma["gauc_users"],
                        "holdout_rows": int(r["labels"].size), "actr_rows": r["training"]["ecdctr"]["rows"],
                        "ecdctr_actr_seconds": r["training"]["ecdctr"]["seconds"],
                        "repretrain_actr_seconds": r["training"]["repretrained"]["seconds"]})
    lift = paired_gauc_lift([(r["labels"], r["users"], r["scores"]["ecdctr"], r["scores"]["repretrained"])
                             for r in runs])
    report = {"monday": monday.isoformat(), "months": months, "steps": steps, "weekly": weekly, "days": per_day,
              "gauc_lift": lift, "cpm_tail_gauc": cm.metrics.get("gauc"),
              "repretrain_tail_gauc": re_info["metrics"]["gauc"],
              "cheaper_by_samples": weekly["samples_ratio"] >= GOAL_RATIO,
              "cheaper_by_wall_time": weekly["seconds_ratio"] >= GOAL_RATIO,
              "gauc_no_worse": lift["ci_high"] >= 0.0,
              "hyper_parameters": {"profile": settings.profile, "tpm": tpm_s.model_dump(), "cpm": cpm_s.model_dump(),
                                   "actr": settings.actr.model_dump(),
                                   "training": settings.training.model_dump()}}
    return report, runs


def _plot(r: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    w = r["weekly"]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    for ax, key, title in ((axes[0], "samples", "samples processed per week"),
                           (axes[1], "seconds", "training wall time per week (s)")):
        tpm, cpm = (s[f"weekly_{key}"] for s in r["steps"][:2])
        ax.bar(["E-CDCTR"], [cpm], color="tab:blue", label="CPM (weekly)")
        ax.bar(["E-CDCTR"], [tpm], bottom=[cpm], color="tab:cyan", label="TPM (monthly / 4.35)")
        ax.bar(["re-pretraining"], [w[f"repretrain_{key}"]], color="tab:gray", label="complete model, 6 months")
        ax.set_title(f"{title}: {w[f'{key}_ratio']:.1f}x")
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_report(r: dict, out_dir: Path, *, title: str) -> Path:
    """``efficiency.md`` (tables), ``efficiency.png`` and ``efficiency.json`` under ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    png = _plot(r, out_dir / "efficiency.png")
    w, lift = r["weekly"], r["gauc_lift"]
    steps = markdown_table(
        ("training run", "runs / week", "rows", "epochs", "samples", "wall s", "samples / week", "wall s / week"),
        [(s["step"], f"{s['runs_per_week']:.3f}", s["rows"], s["epochs"], s["samples"], f"{s['seconds']:.1f}",
          f"{s['weekly_samples']:.0f}", f"{s['weekly_seconds']:.1f}") for s in r["steps"]]
        + [("**E-CDCTR per week** (TPM amortised + CPM)", "", "", "", "", "", f"{w['ecdctr_samples']:.0f}",
            f"{w['ecdctr_seconds']:.1f}"),
           ("**re-pretraining per week**", "", "", "", "", "", f"{w['repretrain_samples']:.0f}",
            f"{w['repretrain_seconds']:.1f}"),
           ("**ratio** (re-pretraining / E-CDCTR)", "", "", "", "", "", f"{w['samples_ratio']:.2f}x",
            f"{w['seconds_ratio']:.2f}x")])
    days = markdown_table(
        ("A-CTR day", "E-CDCTR GAUC", "re-pretrained → A-CTR GAUC", "coverage", "users scored", "holdout rows"),
        [(d["day"], f"{d['ecdctr_gauc']:.4f}", f"{d['repretrain_gauc']:.4f}", f"{d['coverage']:.2f}",
          d["users_scored"], d["holdout_rows"]) for d in r["days"]]
        + [("**pooled**", f"{lift['gauc_a']:.4f}", f"{lift['gauc_b']:.4f}", "", lift["groups"], "")])

    def holds(ok: bool) -> str:
        return "holds" if ok else "does not hold"

    verdict = (f"- E-CDCTR ≥ {GOAL_RATIO:.0f}x cheaper in samples: {holds(r['cheaper_by_samples'])} "
               f"({w['samples_ratio']:.2f}x)\n"
               f"- E-CDCTR ≥ {GOAL_RATIO:.0f}x cheaper in wall time: {holds(r['cheaper_by_wall_time'])} "
               f"({w['seconds_ratio']:.2f}x)\n"
               f"- GAUC no worse (not significantly worse: the lift's 95% CI reaches 0 or above): "
               f"{holds(r['gauc_no_worse'])} (lift {lift['lift']:+.4f}, 95% CI [{lift['ci_low']:+.4f}, "
               f"{lift['ci_high']:+.4f}], paired bootstrap over {lift['groups']} {lift['resampled']}, "
               f"{lift['n_boot']} resamples). The interval is {(lift['ci_high'] - lift['ci_low']) / 2:.4f} wide on "
               f"each side: a GAUC difference smaller than that is not resolved by this run.\n")
    md = (f"# {title}\n\n{__doc__.split(chr(10) + chr(10), 1)[1].strip()}\n\n## Verdict\n\n{verdict}\n"
          f"## Weekly training compute\n\n{steps}\n\n![weekly compute]({png.name})\n\n"
          f"## GAUC of the A-CTR models (same days, same holdouts)\n\n{days}\n\n"
          f"On the CPM's evaluation tail (natural, {r['monday']} − 1 day): CPM GAUC {r['cpm_tail_gauc']:.4f}, "
          f"re-pretrained complete model {r['repretrain_tail_gauc']:.4f}.\n\n"
          f"Hyper-parameters (profile `{r['hyper_parameters']['profile']}`): TPM "
          f"{_hp(r['hyper_parameters']['tpm'])}; CPM and re-pretraining {_hp(r['hyper_parameters']['cpm'])}; "
          f"A-CTR {_hp(r['hyper_parameters']['actr'])}.\n")
    (out_dir / "efficiency.md").write_text(md)
    (out_dir / "efficiency.json").write_text(json.dumps(r, indent=2, default=str))
    return out_dir / "efficiency.md"


def _hp(d: dict) -> str:
    keys = ("learning_rate", "batch_size", "epochs", "epochs_per_month", "embedding_dim", "hidden_units")
    return ", ".join(f"{k} {d[k]}" for k in keys if k in d)


def run_efficiency(base: Settings, *, scale: str, monday: str, days: int, seed: int, out_dir: Path,
                   months: int | None = None) -> dict:
    """Simulate ``scale`` (seed ``seed``) into a scratch store, :func:`measure`, write the report."""
    from ecdctr_pipeline.data.simulate import simulate
    from ecdctr_pipeline.data.store import open_store

    t0 = time.perf_counter()
    monday_d = calendar.parse_date(monday, what="--monday")
    settings = base.model_copy(deep=True)
    months = months or settings.calendar.tpm_train_months
    *_, actr_days, first = windows(settings, monday_d, days, months)
    root = Path(tempfile.mkdtemp(prefix="ecdctr-efficiency-"))
    try:
        settings.store.root = f"file://{root}"
        settings.tpm.seed = settings.cpm.seed = settings.actr.seed = seed
        store = open_store(settings.store)
        log.info("efficiency: simulating %s, %s .. %s", scale, first, actr_days[-1])
        simulate(store, first, actr_days[-1] - dt.timedelta(days=1), scale, seed, progress=True,
                 schema=settings.features.feature_schema())
        r, _ = measure(settings, store, monday_d, days=days, months=months)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    r.update({"scale": scale, "seed": seed, "seconds": round(time.perf_counter() - t0, 1)})
    md = write_report(r, out_dir, title=f"Efficiency: E-CDCTR vs weekly re-pretraining — scale {scale}, seed {seed}, "
                                        f"CPM {monday}, A-CTR days {actr_days[0]} .. {actr_days[-1]}")
    r["markdown"] = str(md)
    return r
