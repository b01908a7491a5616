"""Scoring a model on a run's held-out data (CPM's tail, A-CTR's holdout day) at the same pinned
table version it trained from, through the shared input pipeline; and the CPM's recorded tail.

Experiments on the simulator also score each model on a *probe*: a second store whose raw ad
table holds, on the holdout day, a large extra sample of that day drawn from the same world
(``World.probe``) instead of the day's own rows, its features extracted by the same job. Inside
:func:`probing`, :func:`probe_source` opens that store's rows of a run's held-out window (the
pipeline never enters it: production scores the holdout only)."""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import datetime as dt

from ecdctr_pipeline.core import calendar, paths
from ecdctr_pipeline.core.errors import EcdctrError
from ecdctr_pipeline.data import artifacts
from ecdctr_pipeline.data.store import ArtifactStore
from ecdctr_pipeline.evaluation.metrics import evaluate
from ecdctr_pipeline.modeling.preprocessing import FeatureLayout
from ecdctr_pipeline.modeling.training import TrainArgs, open_source, pinned_version

_PROBE: contextvars.ContextVar[ArtifactStore | None] = contextvars.ContextVar("ecdctr_probe_store", default=None)


def score(model, source, layout: FeatureLayout) -> dict:
    """GAUC (+coverage), AUC and log loss of ``model`` on a streaming source (scored batch by
    batch; only labels, scores and user ids are kept)."""
    from ecdctr_pipeline.modeling.streaming import score_stream

    labels, scores, users = score_stream(model, source, layout)
    return evaluate(labels, scores, users)


def holdout_source(args: TrainArgs):
    if args.data.eval_window is None:
        raise ValueError(f"{args.who}: the run has no held-out window")
    return open_source(args, args.data.eval_window)


@contextlib.contextmanager
def probing(store: ArtifactStore | None):
    """Within the block, :func:`probe_source` reads ``store``'s held-out windows (None: no probe)."""
    token = _PROBE.set(store)
    try:
        yield
    finally:
        _PROBE.reset(token)


def probe_source(args: TrainArgs):
    """The probe store's rows of ``args``' held-out window (the same feature table at the probe
    store's current version), or None outside :func:`probing`."""
    from ecdctr_pipeline.modeling import streaming

    store = _PROBE.get()
    if store is None:
        return None
    if args.data.eval_window is None:
        raise ValueError(f"{args.who}: the run has no held-out window to probe")
    who = f"{args.who} (probe holdout)"
    version, empty = pinned_version(store, args.data.table, [args.data.eval_window], who=who,
                                    schema=args.data.layout.schema)
    data = dataclasses.replace(args.data, version=version, empty_days=empty)
    return streaming.open_source(store, data, args.data.eval_window, who=who)


def evaluate_model(args: TrainArgs, model) -> tuple[dict, int]:
    """``model`` on the run's held-out window: (metrics, rows scored)."""
    source = holdout_source(args)
    return score(model, source, args.data.layout), source.num_rows


def cpm_tail_metrics(store: ArtifactStore, monday: str | dt.date) -> dict:
    """The CPM's evaluation on its held-out tail, from its manifest (refuses a degenerate model)."""
    w = calendar.parse_date(monday, what="--as-of")
    m = artifacts.read_manifest(store, paths.cpm_checkpoint(w))
    if not m.metrics.get("gauc_coverage"):
        raise EcdctrError(f"CPM {w}: no GAUC on the evaluation tail (coverage {m.metrics.get('gauc_coverage')})")
    return {k: m.metrics.get(k) for k in ("gauc", "gauc_coverage", "auc", "logloss")}
