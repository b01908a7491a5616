"""``ecdctr backfill --from DATE --to DATE``: the three tiers over a range, in dependency order
(TPM months whose 1st is in the range, then CPM Mondays, then A-CTR days).

Each run renders its tier's steps from :mod:`ecdctr_pipeline.orchestration.steps` — the same argv, in the same order, as the
DAG and its pods — and runs them through the CLI entry point. A sensor step's check runs once
(a backfill does not wait: the tiers run in order, so what it needs exists unless it failed);
a branch step that answers no ends the run there (a rejected A-CTR model is not exported).
Without ``-v`` the steps' own output stays off the console: the backfill prints its table, and
``--json`` gives every step's result.
Dates whose artifact exists are skipped unless ``force``, which adds ``--force`` to the steps
that take it. Each row names, from the artifact's manifest, the TPM embedding set and the CPM
checkpoint a CPM Monday or an A-CTR day was built from (a skipped day's too).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import logging
import time
from dataclasses import dataclass, field

from ecdctr_pipeline.core.errors import EcdctrError
from ecdctr_pipeline.data import artifacts
from ecdctr_pipeline.data.store import ArtifactStore
from ecdctr_pipeline.orchestration import steps


@dataclass
class Row:
    tier: str
    logical_date: str
    status: str  # "done", "skipped (exists)", "stopped at <step> (...)", "FAILED at <step>: ..."
    seconds: float
    detail: str = ""
    steps: list[str] = field(default_factory=list)  # the steps that ran, in order
    results: dict = field(default_factory=dict)  # each step's JSON result (``--json``)
    # what the run's artifact was built from, read from its manifest (a run that failed: none):
    # the TPM embedding set (its months) a CPM or A-CTR used, the CPM checkpoint an A-CTR day
    # started from ("(fallback)": the previous week's, the week's was late)
    embedding_set: str | None = None
    cpm_checkpoint: str | None = None


def _with_inputs(store: ArtifactStore, tier: str, row: Row) -> Row:
    if row.status.startswith("FAILED"):
        return row
    m = artifacts.find_manifest(store, steps.TIERS[tier].artifact(dt.date.fromisoformat(row.logical_date)))
    if m is None or m.kind == "tpm_embedding_set":
        return row
    labels = artifacts.input_labels(m)
    row.embedding_set, row.cpm_checkpoint = labels["embedding_set_label"], labels["cpm_label"]
    return row


def plan_range(start: dt.date, end: dt.date, tiers: tuple[str, ...]) -> list[tuple[str, dt.date]]:
    if end < start:
        raise EcdctrError(f"backfill: --to {end} is before --from {start}")
    unknown = [t for t in tiers if t not in steps.TIERS]
    if unknown:
        raise EcdctrError(f"backfill: unknown tier(s) {', '.join(unknown)}: expected a subset of tpm,cpm,actr")
    return [(t, d) for t in steps.TIERS if t in tiers for d in steps.TIERS[t].dates(start, end)]


def _detail(name: str, result) -> str:
    if not isinstance(result, dict):
        return ""
    m = result.get("metrics") or {}
    if name.startswith("train_") and "gauc" in m:
        return f"GAUC {m['gauc']:.4f}"
    if name == "wait_for_cpm":
        return f"CPM {result['cpm_checkpoint']}" + (" (fallback)" if result.get("fallback") else "")
    if name == "wait_for_embedding_set":
        return f"set {result['embedding_set']}"
    if name == "export_serving":
        return f"serving v{result['version']}"
    return ""


def run_one(store: ArtifactStore, tier: str, day: dt.date, *, force: bool, config: str | None = None) -> Row:
    """One tier's run for ``day``: its steps' argv, rendered, through the CLI (``--config`` passed
    on when the backfill was given one; otherwise the steps read ECDCTR_CONFIG, as in a pod)."""
    from ecdctr_pipeline.cli.verbs import execute

    t0 = time.perf_counter()
    t = steps.TIERS[tier]
    ds = day.isoformat()
    if not force and artifacts.find_manifest(store, t.artifact(day)) is not None:
        return Row(tier, ds, "skipped (exists)", 0.0)
    results: dict[str, object] = {}
    details: list[str] = []

    def row(status: str) -> Row:
        return Row(tier, ds, status, round(time.perf_counter() - t0, 1), ", ".join(d for d in details if d),
                   list(results), dict(results))

    # quiet (no -v): a step's own output stays off the console; its result is in the row (--json)
    quiet = not logging.getLogger("ecdctr_pipeline").isEnabledFor(logging.INFO)
    for step in t.steps:
        argv = (steps.render(step.argv, ds, results) + (["--force"] if force and step.force_flag else [])
                + (["--config", config] if config else []))
        try:
            with contextlib.redirect_stdout(io.StringIO()) if quiet else contextlib.nullcontext():
                rc, result = execute(argv)
        except EcdctrError as exc:
            return row(f"FAILED at {step.name}: {exc}")
        results[step.name] = result
        if step.kind == "branch" and not result[step.condition]:
            return row(f"stopped at {step.name} ({step.condition} is false: {step.doc})")
        if rc != 0:
            return row(f"FAILED at {step.name}: `ecdctr {' '.join(argv)}` exited {rc}")
        details.append(_detail(step.name, result))
    return row("done")


def backfill(store: ArtifactStore, start: dt.date, end: dt.date, *, force: bool = False,
             tiers: tuple[str, ...] = ("tpm", "cpm", "actr"), stop_on_error: bool = False,
             config: str | None = None) -> list[Row]:
    from ecdctr_pipeline.core.report import progress

    rows: list[Row] = []
    runs = plan_range(start, end, tiers)
    bar = progress(runs, desc="backfill", total=len(runs), unit="run")
    for tier, day in bar:
        bar.set_postfix_str(f"{tier} {day}")
        rows.append(_with_inputs(store, tier, run_one(store, tier, day, force=force, config=config)))
        if stop_on_error and rows[-1].status.startswith("FAILED"):
            break
    bar.close()
    return rows
