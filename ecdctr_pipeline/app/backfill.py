"""``ecdctr backfill --from DATE --to DATE``: the three tiers over a range, in dependency order
(TPM months whose 1st is in the range, then CPM Mondays, then A-CTR days).

Each run renders its tier's steps from :mod:`ecdctr_pipeline.orchestration.steps` — the same argv, in the same order, as the
DAG and its pods — and runs them through the CLI entry point. A sensor step's check runs once
(a backfill does not wait: the tiers run in order, so what it needs exists unless it failed);
a branch step that answers no ends the run there (a rejected A-CTR model is not exported).
Without ``-v`` the steps' own output stays off the console: the backfill prints its table, and
``--json`` gives every step's result.
Every step of every run is executed: each step skips work that is already done (an extraction of
the same raw version, a published artifact, an evaluation of the same model attempt, an export of
the same model), so a backfill over a range that is complete changes nothing and reports "up to
date", and one over a store that lost a piece (a removed serving version, say) repairs exactly that
piece. ``force`` adds ``--force`` to the steps that take it (retrain, re-extract, re-export).
``steps`` runs only the named steps (sensor and branch steps always run: they are checks, and
their answers feed the later steps and decide whether export may run); ``dry_run`` renders the
plan (every run's steps and argv) and runs nothing; ``stop_on_error`` (``--fail-fast``) stops at
the first failed run. Each row names, from the artifact's manifest, the TPM embedding set and the
CPM checkpoint a CPM Monday or an A-CTR day was built from.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import logging
import os
import time
from dataclasses import dataclass, field

from ecdctr_pipeline.core.errors import EcdctrError
from ecdctr_pipeline.data import artifacts
from ecdctr_pipeline.data.artifacts import ENV_RUN_ID
from ecdctr_pipeline.data.store import ArtifactStore
from ecdctr_pipeline.orchestration import steps


@dataclass
class Row:
    tier: str
    logical_date: str
    # "done", "up to date" (every step found its work done), "planned" (--dry-run),
    # "stopped at <step> (...)", "FAILED at <step>: ..."
    status: str
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


class _Placeholder:
    """A step's result in a dry run: ``[key]`` renders as ``<step.key>`` (known once it ran)."""

    def __init__(self, name: str):
        self.name = name

    def __getitem__(self, key: str) -> str:
        return f"<{self.name}.{key}>"


def _argv(step, ds: str, results: dict, *, force: bool, config: str | None) -> list[str]:
    return (steps.render(steps.argv_of(step), ds, results, params={"force": force})
            + (["--config", config] if config else []))


def _chosen(tier: str, only: tuple[str, ...] | None) -> list:
    """The tier's steps a run executes: all of them, or ``only`` plus every sensor and branch step."""
    t = steps.TIERS[tier]
    if only is None:
        return list(t.steps)
    return [s for s in t.steps if s.name in only or s.kind in ("sensor", "branch")]


def check_steps(tiers: tuple[str, ...], only: tuple[str, ...] | None) -> None:
    if only is None:
        return
    known = {s.name for t in tiers for s in steps.TIERS[t].steps}
    unknown = [s for s in only if s not in known]
    if unknown:
        raise EcdctrError(f"backfill: unknown step(s) {', '.join(unknown)} for tier(s) {','.join(tiers)}: expected "
                          f"some of {', '.join(sorted(known))}")


def run_one(store: ArtifactStore, tier: str, day: dt.date, *, force: bool, config: str | None = None,
            only: tuple[str, ...] | None = None, dry_run: bool = False) -> Row:
    """One tier's run for ``day``: its steps' argv, rendered, through the CLI (``--config`` passed
    on when the backfill was given one; otherwise the steps read ECDCTR_CONFIG, as in a pod)."""
    from ecdctr_pipeline.cli.verbs import execute

    t0 = time.perf_counter()
    ds = day.isoformat()
    chosen = _chosen(tier, only)
    if dry_run:
        ph = {s.name: _Placeholder(s.name) for s in steps.TIERS[tier].steps}
        plan = {s.name: " ".join(["ecdctr", *_argv(s, ds, ph, force=force, config=config)]) for s in chosen}
        return Row(tier, ds, "planned", 0.0, f"{len(chosen)} step(s)", list(plan), plan)
    results: dict[str, object] = {}
    details: list[str] = []
    # the manifests this run publishes name it (as a DAG run's name theirs), unless the caller set one
    run_id = None if os.environ.get(ENV_RUN_ID) else \
        f"ecdctr_backfill__{tier}__{ds}__{dt.datetime.now(dt.timezone.utc):%Y-%m-%dT%H:%M:%SZ}"

    def row(status: str) -> Row:
        return Row(tier, ds, status, round(time.perf_counter() - t0, 1), ", ".join(d for d in details if d),
                   list(results), dict(results))

    # quiet (no -v): a step's own output stays off the console; its result is in the row (--json)
    quiet = not logging.getLogger("ecdctr_pipeline").isEnabledFor(logging.INFO)
    for step in chosen:
        argv = _argv(step, ds, results, force=force, config=config)
        try:
            with contextlib.redirect_stdout(io.StringIO()) if quiet else contextlib.nullcontext(), \
                    artifacts.run_id_env(run_id):
                rc, result = execute(argv)
        except EcdctrError as exc:
            return row(f"FAILED at {step.name}: {exc}")
        results[step.name] = result
        if step.kind == "branch" and not result[step.condition]:
            return row(f"stopped at {step.name} ({step.condition} is false: {step.doc})")
        if rc != 0:
            return row(f"FAILED at {step.name}: `ecdctr {' '.join(argv)}` exited {rc}")
        details.append(_detail(step.name, result))
    work = [r.get("skipped") for r in results.values() if isinstance(r, dict) and "skipped" in r]
    return row("up to date" if work and all(work) else "done")


def backfill(store: ArtifactStore, start: dt.date, end: dt.date, *, force: bool = False,
             tiers: tuple[str, ...] = ("tpm", "cpm", "actr"), stop_on_error: bool = False,
             config: str | None = None, only: tuple[str, ...] | None = None, dry_run: bool = False) -> list[Row]:
    from ecdctr_pipeline.core.report import progress

    rows: list[Row] = []
    runs = plan_range(start, end, tiers)
    check_steps(tiers, only)
    bar = progress(runs, desc="backfill", total=len(runs), unit="run")
    for tier, day in bar:
        bar.set_postfix_str(f"{tier} {day}")
        rows.append(_with_inputs(store, tier, run_one(store, tier, day, force=force, config=config, only=only,
                                                           dry_run=dry_run)))
        if stop_on_error and rows[-1].status.startswith("FAILED"):
            break
    bar.close()
    return rows
