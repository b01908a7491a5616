"""The blessing gate of A-CTR: a candidate is blessed when its holdout GAUC reaches the absolute
floor ``actr.min_gauc`` and either nothing is served yet or it is not worse than the served model's
GAUC on the same holdout by more than ``actr.bless_tolerance``. The verdict is a typed :class:`~ecdctr_pipeline.data.artifacts.Blessing`
record in the A-CTR manifest; export refuses anything not blessed."""

from __future__ import annotations

import datetime as dt

from ecdctr_pipeline.core import paths
from ecdctr_pipeline.data import artifacts
from ecdctr_pipeline.data.store import ArtifactStore
from ecdctr_pipeline.evaluation.metrics import MetricError, is_blessed


def served_baseline(store: ArtifactStore, before: dt.date) -> tuple[str, artifacts.Manifest] | None:
    """The model the gate compares with: the served version's A-CTR model, else the latest
    blessed A-CTR model before ``before``."""
    from ecdctr_pipeline.serving.pointer import read_served

    served = read_served(store).get("version")
    m = artifacts.find_manifest(store, paths.serving_version(served)) if served else None
    if m is not None and m.inputs.actr_model:
        prefix = paths.actr_model(m.inputs.actr_model)
        am = artifacts.find_manifest(store, prefix)
        if am is not None:
            return prefix, am
    blessed = [(p, m) for p, m in artifacts.list_artifacts(store, "actr_model")
               if m.blessed and m.logical_date < before.isoformat()]
    return max(blessed, key=lambda pm: pm[1].logical_date) if blessed else None


def judge(store: ArtifactStore, candidate_gauc: float, *, holdout_source, layout, day: dt.date, tolerance: float,
          holdout: dict | None = None, floor: float = 0.0) -> artifacts.Blessing:
    """Score the served baseline on the same holdout rows and bless or reject the candidate."""
    from ecdctr_pipeline.evaluation.holdout import score
    from ecdctr_pipeline.modeling.training import load_model

    baseline = served_baseline(store, day)
    record = None
    if baseline is not None:
        b_prefix, b_manifest = baseline
        try:
            b = score(load_model(store, b_prefix, b_manifest), holdout_source, layout)
            record = artifacts.Baseline(model=b_manifest.artifact_id, gauc=b["gauc"])
        except MetricError as exc:
            record = artifacts.Baseline(model=b_manifest.artifact_id, gauc=None, error=str(exc))
    return artifacts.Blessing(
        blessed=is_blessed(candidate_gauc, record and record.gauc, tolerance, floor), candidate_gauc=candidate_gauc,
        baseline=record, tolerance=tolerance, holdout=holdout, min_gauc=floor)
