"""Baselines trained on A-CTR's windows: Target-only (the same network, random init, no TPM
inputs, trained on the same ad window with the same budget), and the day's comparison report
of the published A-CTR model against it (``ecdctr evaluate actr``)."""

from __future__ import annotations

import datetime as dt
import json

from ecdctr_pipeline.core import paths
from ecdctr_pipeline.core.settings import Settings
from ecdctr_pipeline.data import artifacts
from ecdctr_pipeline.data.store import ArtifactStore
from ecdctr_pipeline.tiers import actr


def target_only(settings: Settings, store: ArtifactStore, day: str | dt.date, *, args=None) -> dict:
    """Holdout metrics of a Target-only model trained on A-CTR ``day``'s window (``args``: its
    resolved :class:`~ecdctr_pipeline.modeling.training.TrainArgs`, when the caller has them)."""
    from ecdctr_pipeline.evaluation.holdout import evaluate_model
    from ecdctr_pipeline.modeling.training import quiet_tf

    quiet_tf()
    args = args or actr.resolve(settings, store, actr.plan(settings, day), target_only=True)
    result = actr.run_training(args)
    return evaluate_model(args, result.model)[0]


def evaluate_day(settings: Settings, store: ArtifactStore, day: str | dt.date) -> dict:
    """Holdout metrics of the published A-CTR model of ``day`` and of a Target-only model."""
    from ecdctr_pipeline.evaluation.holdout import evaluate_model
    from ecdctr_pipeline.modeling.training import load_model

    p = actr.plan(settings, day)
    prefix = paths.actr_model(p.day)
    manifest = artifacts.read_manifest(store, prefix)
    args = actr.resolve(settings, store, p, target_only=True)  # the same window and table version rules
    a = evaluate_model(args, load_model(store, prefix, manifest))[0]
    t = target_only(settings, store, p.day, args=args)
    report = {"day": p.day.isoformat(), "holdout": p.holdout_window.to_dict(), "actr": a, "target_only": t,
              "gauc_lift": a["gauc"] - t["gauc"], "blessed": manifest.blessed,
              "cpm_checkpoint": manifest.inputs.cpm_checkpoint, "embedding_set": manifest.inputs.embedding_set}
    store.put_bytes(paths.evaluation_report(p.day), json.dumps(report, indent=2).encode())
    return report
