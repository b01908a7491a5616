"""``ecdctr backfill --from DATE --to DATE``: the three tiers over a range, in dependency order
(TPM months whose 1st is in the range, then CPM Mondays, then A-CTR days), running the same
steps as the DAGs in-process. Dates whose artifact exists are skipped unless ``force``."""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass

from .. import artifacts, calendar, paths
from ..errors import EcdctrError
from ..settings import Settings
from ..store import open_store


@dataclass
class Row:
    tier: str
    logical_date: str
    status: str  # "done", "skipped (exists)", "rejected (not exported)", "FAILED: ..."
    seconds: float
    detail: str = ""


def plan_range(start: dt.date, end: dt.date, tiers: tuple[str, ...]) -> list[tuple[str, dt.date]]:
    if end < start:
        raise EcdctrError(f"backfill: --to {end} is before --from {start}")
    runs: list[tuple[str, dt.date]] = []
    if "tpm" in tiers:
        runs += [("tpm", m.first_day) for m in calendar.month_starts_between(start, end)]
    if "cpm" in tiers:
        runs += [("cpm", w) for w in calendar.mondays_between(start, end)]
    if "actr" in tiers:
        runs += [("actr", d) for d in calendar.iter_days(start, end)]
    return runs


def _artifact(tier: str, day: dt.date) -> str:
    return {"tpm": lambda: paths.tpm_set(calendar.Month.of(day)), "cpm": lambda: paths.cpm_checkpoint(day),
            "actr": lambda: paths.actr_model(day)}[tier]()


def run_one(settings: Settings, tier: str, day: dt.date, *, force: bool) -> Row:
    from .. import extract, quality, serving, training

    t0 = time.perf_counter()
    store = open_store(settings.store)
    if not force and artifacts.find_manifest(store, _artifact(tier, day)) is not None:
        return Row(tier, day.isoformat(), "skipped (exists)", 0.0)
    ds = day.isoformat()
    cal = settings.calendar
    if tier == "tpm":
        plan = calendar.tpm_plan(day, cal)
        extract.extract_tpm(settings, plan.month, force=force)
        for d in plan.train_months[-1].window.partitions():
            quality.gate(settings, paths.tpm_features(), d, context={"backfill": True})
        r = training.train_tpm(settings, plan.month, force=force)
        detail = f"set {plan.month}: months {', '.join(r.extra.get('months', []))}"
    elif tier == "cpm":
        plan = calendar.cpm_plan(day, cal)
        extract.extract_complete(settings, "natural", day, force=force)
        for d in plan.window.partitions()[-7:]:
            quality.gate(settings, paths.complete_features("natural"), d, context={"backfill": True})
        r = training.train_cpm(settings, day, force=force)
        detail = f"GAUC {r.metrics.get('gauc', float('nan')):.4f}, set {r.extra.get('embedding_set')}"
    else:
        plan = calendar.actr_plan(day, cal)
        training.resolve_cpm(store, plan)  # fail fast, before any work, when no CPM can be used
        extract.extract_complete(settings, "ad", day, force=force)
        for table in (paths.raw_table("ad"), paths.complete_features("ad")):
            quality.gate(settings, table, plan.holdout_window.start.isoformat(), context={"backfill": True})
        r = training.train_actr(settings, day, force=force)
        detail = f"GAUC {r.metrics.get('gauc', float('nan')):.4f}, CPM {r.extra.get('cpm_checkpoint')}"
        if not r.extra.get("blessed"):
            return Row(tier, ds, "rejected (not exported)", round(time.perf_counter() - t0, 1), detail)
        e = serving.export_version(settings, day, force=force)
        detail += f", serving v{e['version']}"
    return Row(tier, ds, "done", round(time.perf_counter() - t0, 1), detail)


def backfill(settings: Settings, start: dt.date, end: dt.date, *, force: bool = False,
             tiers: tuple[str, ...] = ("tpm", "cpm", "actr"), stop_on_error: bool = False) -> list[Row]:
    from ..report import progress

    rows: list[Row] = []
    runs = plan_range(start, end, tiers)
    bar = progress(runs, desc="backfill", total=len(runs), unit="run")
    for tier, day in bar:
        bar.set_postfix_str(f"{tier} {day}")
        t0 = time.perf_counter()
        try:
            rows.append(run_one(settings, tier, day, force=force))
        except EcdctrError as exc:
            rows.append(Row(tier, day.isoformat(), f"FAILED: {exc}", round(time.perf_counter() - t0, 1)))
            if stop_on_error:
                break
    bar.close()
    return rows
