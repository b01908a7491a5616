"""``ecdctr metrics --since DATE``: the daily model's history as a page an operator reads.

One row per A-CTR day in the range, from what the pipeline already recorded (nothing is
rescored): the candidate's holdout GAUC and coverage, the served model's GAUC on the same
holdout (the blessing record), Target-only's GAUC and the lift (the day's evaluation report,
when the daily ``evaluate`` step compared them), the gate's verdict (blessed, promoted,
rejected, not evaluable), the DAG run that trained it, and the model serving after that day
with its age in days. Written as ``metrics.md``, ``metrics.json``, ``metrics.png`` and
``metrics.html`` (the PNG embedded), all replaced together.

GAUC here is one number per day: the manifests hold no per-user groups, so the page shows no
interval; ``ecdctr replicate`` and ``ecdctr experiments`` give intervals from the right unit.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import json
from pathlib import Path

from ecdctr_pipeline.core import paths
from ecdctr_pipeline.core.errors import EcdctrError
from ecdctr_pipeline.core.report import fmt, markdown_table
from ecdctr_pipeline.data import artifacts
from ecdctr_pipeline.data.store import ArtifactStore

COLUMNS = ("day", "GAUC", "coverage", "served model (GAUC, same holdout)", "Target-only GAUC", "lift", "verdict",
           "serving after the day (age, days)", "run id")


def _verdict(m: artifacts.Manifest) -> str:
    b = m.blessing
    if b is None:
        return "no record"
    if b.promoted:
        return f"promoted by {b.promoted['by']}"
    if b.not_evaluable:
        return "not evaluable"
    return "blessed" if b.blessed else "rejected"


def collect(store: ArtifactStore, since: dt.date, until: dt.date) -> list[dict]:
    """The rows of the page, oldest day first."""
    if until < since:
        raise EcdctrError(f"metrics: --until {until} is before --since {since}")
    versions = sorted(((m.inputs.actr_model, int(m.artifact_id)) for _, m in
                       artifacts.list_artifacts(store, "serving_version") if m.inputs.actr_model))
    rows = []
    for _, m in artifacts.list_artifacts(store, "actr_model"):
        day = dt.date.fromisoformat(m.logical_date)
        if not since <= day <= until:
            continue
        report_key = paths.evaluation_report(day)
        report = json.loads(store.get_bytes(report_key)) if store.exists(report_key) else {}
        to = (report.get("target_only") or {}).get("gauc") if report.get("actr_attempt") in (None, m.attempt) else None
        b = m.blessing
        serving = [(d, v) for d, v in versions if d <= day.isoformat()]
        s_day, s_version = serving[-1] if serving else (None, None)
        rows.append({
            "day": day.isoformat(), "gauc": m.metrics.get("gauc"), "gauc_coverage": m.metrics.get("gauc_coverage"),
            "served_model": b and b.baseline and b.baseline.model, "served_gauc": b and b.baseline and b.baseline.gauc,
            "target_only_gauc": to, "lift": (m.metrics["gauc"] - to) if to is not None and m.metrics.get("gauc")
            is not None else None, "verdict": _verdict(m), "min_gauc": b and b.min_gauc,
            "serving_version": s_version, "serving_actr_model": s_day,
            "serving_age_days": (day - dt.date.fromisoformat(s_day)).days if s_day else None, "run_id": m.run_id,
        })
    return sorted(rows, key=lambda r: r["day"])


def _plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def x(r):  # real dates: the axis is time, whatever order the series are drawn in
        return dt.date.fromisoformat(r["day"])

    ys = [v for r in rows for v in (r["gauc"], r["served_gauc"], r["target_only_gauc"]) if v is not None] or [0.5]
    lo, hi = min(0.45, min(ys) - 0.02), max(ys) + 0.03
    fig, (ax, ax2) = plt.subplots(2, 1, figsize=(10, 5.6), sharex=True, gridspec_kw={"height_ratios": [3, 1.3]})
    g = [(x(r), r["gauc"]) for r in rows if r["gauc"] is not None]
    if g:
        ax.plot(*zip(*g), color="tab:blue", label="A-CTR candidate", zorder=3)
    marks = {"blessed": ("o", "tab:blue"), "rejected": ("X", "tab:red")}
    for verdict, (marker, color) in marks.items():
        pts = [(x(r), r["gauc"]) for r in rows if r["verdict"] == verdict and r["gauc"] is not None]
        if pts:
            ax.scatter(*zip(*pts), marker=marker, s=60, color=color, zorder=4, label=verdict)
    # no GAUC to place: a marker on the axis floor
    none = [(x(r), lo + 0.004) for r in rows if r["verdict"] == "not evaluable" or r["gauc"] is None]
    if none:
        ax.scatter(*zip(*none), marker="v", s=60, color="tab:orange", zorder=4, label="not evaluable (no GAUC)")
    promoted = [(x(r), r["gauc"]) for r in rows if r["verdict"].startswith("promoted") and r["gauc"] is not None]
    if promoted:
        ax.scatter(*zip(*promoted), marker="*", s=140, color="tab:purple", zorder=5, label="promoted")
    served = [(x(r), r["served_gauc"]) for r in rows if r["served_gauc"] is not None]
    if served:
        ax.plot(*zip(*served), marker="D", linestyle="--", color="tab:green", label="served model, same holdout")
    to = [(x(r), r["target_only_gauc"]) for r in rows if r["target_only_gauc"] is not None]
    if to:
        ax.plot(*zip(*to), marker="s", color="tab:gray", label="Target-only")
    ax.axhline(0.5, color="black", linewidth=0.8, linestyle=":", label="chance (0.5)")
    floors = {r["min_gauc"] for r in rows if r["min_gauc"]}
    if len(floors) == 1 and floors != {0.5}:
        ax.axhline(floors.pop(), color="tab:red", linewidth=0.8, linestyle="-.", label="actr.min_gauc")
    ax.set_ylim(lo, hi)
    ax.set_ylabel("GAUC on the day's holdout")
    ax.set_title("A-CTR daily: candidate, served model and Target-only")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    ages = [r["serving_age_days"] if r["serving_age_days"] is not None else 0 for r in rows]
    ax2.bar([x(r) for r in rows], ages, color=["tab:gray" if r["serving_version"] else "white" for r in rows], edgecolor="black")
    ax2.set_ylabel("served model\nage (days)")
    ax2.set_ylim(0, max(ages + [1]) + 1)
    import matplotlib.dates as mdates

    ax2.xaxis.set_major_locator(mdates.DayLocator(interval=max(1, len(rows) // 14)))
    ax2.xaxis.set_major_formatter(mdates.DateFormatter("%Y-%m-%d"))
    ax2.grid(alpha=0.3, axis="y")
    fig.autofmt_xdate()
    fig.tight_layout()
    fig.savefig(path, dpi=110, format="png")
    plt.close(fig)


def cells(r: dict) -> tuple:
    served = f"{r['served_model']} ({r['served_gauc']:.4f})" if r["served_gauc"] is not None else \
        (r["served_model"] or "none served")
    serving = f"v{r['serving_version']} = A-CTR {r['serving_actr_model']} ({r['serving_age_days']})" \
        if r["serving_version"] else "nothing served"
    lift = f"{r['lift']:+.4f}" if r["lift"] is not None else None
    return (r["day"], r["gauc"], r["gauc_coverage"], served, r["target_only_gauc"], lift, r["verdict"], serving,
            r["run_id"])


def write(store: ArtifactStore, since: dt.date, until: dt.date | None, out: Path, *, label: str | None = None) -> dict:
    """The page for [since, until] (``until`` None: up to the newest A-CTR day in the store);
    ``label``: how the page names the store (default its root)."""
    label = label or store.root
    rows = collect(store, since, until or dt.date.max)
    if not rows:
        raise EcdctrError(f"metrics: no A-CTR model in {store.root} between {since} and {until}")
    out.mkdir(parents=True, exist_ok=True)
    tmp = {name: out / f".{name}.tmp" for name in ("metrics.png", "metrics.md", "metrics.json", "metrics.html")}
    _plot(rows, tmp["metrics.png"])
    title = f"A-CTR daily metrics {rows[0]['day']} .. {rows[-1]['day']}"
    table = markdown_table(COLUMNS, [cells(r) for r in rows])
    note = ("One GAUC per day from the manifests (no per-user groups: no interval here; `ecdctr replicate` gives "
            "intervals). Served model: the one the gate compared with, scored on the same holdout rows. "
            "Serving after the day: the newest version exported from a model of that day or before.")
    tmp["metrics.md"].write_text(f"# {title}\n\nstore: {label}\n\n{table}\n\n{note}\n\n![metrics](metrics.png)\n")
    tmp["metrics.json"].write_text(json.dumps({"store": label, "rows": rows}, indent=2))
    png64 = base64.b64encode(tmp["metrics.png"].read_bytes()).decode()
    head = "".join(f"<th>{html.escape(c)}</th>" for c in COLUMNS)
    body = "".join("<tr>" + "".join(f"<td class='{'bad' if c in ('rejected', 'not evaluable') else ''}'>"
                                    f"{html.escape(fmt(c))}"
                                    "</td>" for c in cells(r)) + "</tr>" for r in rows)
    tmp["metrics.html"].write_text(
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>"
        "body{font-family:sans-serif;margin:24px;color:#222}table{border-collapse:collapse;font-size:13px}"
        "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right;white-space:nowrap}th{background:#f2f2f2}"
        "td.bad{color:#b00020;font-weight:bold}p{max-width:60em;font-size:13px}</style></head><body>"
        f"<h1>{html.escape(title)}</h1><p>store: {html.escape(label)}</p>"
        f"<img alt='metrics' src='data:image/png;base64,{png64}'><table><tr>{head}</tr>{body}</table>"
        f"<p>{html.escape(note)}</p></body></html>")
    for name, t in tmp.items():
        t.replace(out / name)
    return {"rows": rows, "markdown": str(out / "metrics.md"), "html": str(out / "metrics.html"),
            "png": str(out / "metrics.png")}


PROMETHEUS = (  # name, help, the row's value (the newest A-CTR day's)
    ("ecdctr_actr_day_timestamp_seconds", "start of the newest A-CTR day with a model (UTC)",
     lambda r: dt.datetime.combine(dt.date.fromisoformat(r["day"]), dt.time(), dt.timezone.utc).timestamp()),
    ("ecdctr_actr_gauc", "holdout GAUC of the newest A-CTR model (NaN: not evaluable)", lambda r: r["gauc"]),
    ("ecdctr_actr_gauc_coverage", "share of holdout impressions GAUC covers", lambda r: r["gauc_coverage"]),
    ("ecdctr_actr_blessed", "1 if the newest A-CTR model was blessed or promoted, else 0",
     lambda r: float(r["verdict"] == "blessed" or r["verdict"].startswith("promoted"))),
    ("ecdctr_served_version", "the serving version after the newest A-CTR day (NaN: nothing served)",
     lambda r: r["serving_version"]),
    ("ecdctr_served_model_age_days", "days between the newest A-CTR day and the served model's day",
     lambda r: r["serving_age_days"]),
)


def prometheus_text(rows: list[dict]) -> str:
    """The newest day's figures as Prometheus gauges (text exposition format, for node_exporter's
    textfile collector): current values only, no per-day label (bounded cardinality)."""
    r = rows[-1]
    lines = []
    for name, text, value in PROMETHEUS:
        v = value(r)
        lines += [f"# HELP {name} {text}", f"# TYPE {name} gauge", f"{name} {'NaN' if v is None else repr(float(v))}"]
    return "\n".join(lines) + "\n"


def write_prometheus(rows: list[dict], path: Path) -> Path:
    """Write :func:`prometheus_text` to ``path`` under a temporary name in the same folder, then
    rename: the collector never reads half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(prometheus_text(rows))
    tmp.replace(path)
    return path
