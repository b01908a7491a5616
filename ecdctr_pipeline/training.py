"""Trainers of the three tiers. Each resolves its plan, reads its Delta snapshot, trains,
evaluates and publishes one artifact whose manifest records its lineage.

* :func:`train_tpm` — month ``M``: the tiny model over ``M-6 .. M-1`` in order (weights carry
  over from month to month), snapshotting the user/item id tables after each of the last 3.
* :func:`train_cpm` — Monday ``W``: the complete model on natural ``[W-28d, W-1d)``, evaluated
  on the tail ``[W-1d, W)``, with embedding set ``month(W-28d)``.
* :func:`train_actr` — day ``D``: the complete model initialised from the CPM checkpoint of
  the plan (transfer policy), fine-tuned on ad ``[D-28d, D-1d)``, evaluated on
  ``[D-1d, D)``, blessed or rejected against the currently served model.
* :func:`train_target_only` — the same network with random init and no TPM inputs on the
  same ad window (the paper's baseline), for ``ecdctr evaluate``.

All of them are idempotent for their logical date: an artifact that exists is left alone
unless ``force``.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from . import artifacts, calendar, delta, paths
from .errors import ArtifactMissingError, EcdctrError
from .settings import Settings
from .store import ArtifactStore, open_store, scratch_dir

log = logging.getLogger(__name__)

MODEL_FILE = "model.keras"


class TrainingError(EcdctrError):
    """Training cannot run (missing features, empty month, ...)."""


class CheckpointMissing(ArtifactMissingError):
    """No usable CPM checkpoint for an A-CTR run."""


@dataclass
class TrainResult:
    tier: str
    artifact: str  # store prefix
    logical_date: str
    skipped: bool
    metrics: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


# ------------------------------------------------------------------ shared helpers
def _quiet_tf() -> None:
    import os

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def read_features(store: ArtifactStore, table: str, window: calendar.Window, layout, *, who: str):
    """Arrays of ``table`` for every day of ``window`` (each day must be present) and the version read."""
    from .inputs import to_arrays

    present = set(delta.partitions(store, table))
    for day in window.partitions():
        if day not in present:
            raise TrainingError(f"{who}: {table} has no partition {day} (window {window}); run the extraction first")
    cols = list(dict.fromkeys([c for c in layout.columns] + ["dt"]))
    t, version = delta.read(store, table, partitions=window.partitions(), columns=cols)
    return t, version


def _split(arrays: dict[str, np.ndarray], mask: np.ndarray) -> dict[str, np.ndarray]:
    return {k: v[mask] for k, v in arrays.items()}


def _fit(model, arrays, *, batch_size: int, epochs: int, seed: int, label: str) -> dict:
    from .inputs import make_dataset

    ds = make_dataset(arrays, batch_size, shuffle=True, seed=seed)
    n_batches = -(-len(arrays["click"]) // batch_size)
    log.info("%s: %d rows, %d batches x %d epoch(s)", label, len(arrays["click"]), n_batches, epochs)
    hist = model.fit(ds, epochs=epochs, shuffle=False, verbose=2 if n_batches > 20 else 0)
    return {k: float(v[-1]) for k, v in hist.history.items()}


def predict(model, arrays: dict[str, np.ndarray], batch_size: int = 8192) -> np.ndarray:
    from .inputs import make_dataset

    ds = make_dataset(arrays, batch_size, shuffle=False).map(lambda x, y: x)
    return model.predict(ds, verbose=0).reshape(-1)


def _evaluate(model, arrays) -> dict:
    from .metrics import evaluate

    return evaluate(arrays["click"], predict(model, arrays), arrays["user_id"])


def _save_model(model, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / MODEL_FILE
    model.save(path)
    return path


def load_model(store: ArtifactStore, prefix: str, manifest: artifacts.Manifest | None = None):
    """A published Keras model (verified against its manifest)."""
    import keras

    from . import layers  # noqa: F401 - registers the custom layers

    manifest = manifest or artifacts.read_manifest(store, prefix)
    tmp = Path(tempfile.mkdtemp(prefix="ecdctr-model-"))
    try:
        data = artifacts.load_bytes(store, prefix, MODEL_FILE, manifest)
        path = tmp / MODEL_FILE
        path.write_bytes(data)
        return keras.models.load_model(path, compile=False)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _seed(seed: int) -> None:
    import keras

    keras.utils.set_random_seed(seed)


# ------------------------------------------------------------------ TPM
def train_tpm(settings: Settings, month: str | calendar.Month, *, force: bool = False) -> TrainResult:
    _quiet_tf()
    from . import embedding_sets
    from .inputs import FeatureLayout, to_arrays
    from .models import build_tpm_model, compile_model

    t0 = time.perf_counter()
    plan = calendar.tpm_plan(month, settings.calendar)
    store = open_store(settings.store)
    prefix = paths.tpm_set(plan.month)
    who = f"train tpm {plan.month}"
    existing = artifacts.find_manifest(store, prefix)
    if existing is not None and not force:
        return TrainResult("tpm", prefix, plan.logical_date.isoformat(), True, existing.metrics)
    layout = FeatureLayout("tpm")
    table, version = read_features(store, paths.tpm_features(), plan.data_window, layout, who=who)
    arrays = to_arrays(table, layout)
    month_of_row = np.asarray(table["dt"].to_numpy(zero_copy_only=False)).astype("U7")
    for m in plan.train_months:
        if not (month_of_row == str(m)).any():
            raise TrainingError(f"{who}: no rows for month {m} in {paths.tpm_features()}")
    user_vocab, item_vocab = np.unique(arrays["user_id"]), np.unique(arrays["item_id"])
    _seed(settings.tpm.seed)
    model = compile_model(build_tpm_model(settings.tpm, settings.features, user_vocab, item_vocab),
                          settings.tpm.learning_rate)
    seen_users = np.zeros(len(user_vocab), bool)
    seen_items = np.zeros(len(item_vocab), bool)
    scratch = scratch_dir(settings.store, "ecdctr-tpm-")
    files, row_counts, metrics = {}, {}, {}
    try:
        for i, m in enumerate(plan.train_months):
            part = _split(arrays, month_of_row == str(m))
            seen_users[np.searchsorted(user_vocab, np.unique(part["user_id"]))] = True
            seen_items[np.searchsorted(item_vocab, np.unique(part["item_id"]))] = True
            hist = _fit(model, part, batch_size=settings.tpm.batch_size, epochs=settings.tpm.epochs_per_month,
                        seed=settings.tpm.seed + i, label=f"{who} month {m}")
            metrics[f"train_loss_{m}"] = hist.get("loss")
            row_counts[f"train_rows_{m}"] = int(len(part["click"]))
            if m in plan.snapshot_months:
                for side, vocab, seen in (("user", user_vocab, seen_users), ("item", item_vocab, seen_items)):
                    weights = model.get_layer(f"tpm_{side}_embedding").embeddings.numpy()
                    name = embedding_sets.table_name(side, str(m))
                    n = embedding_sets.write_table(scratch / name, vocab[seen], weights[1:][seen])
                    files[name] = scratch / name
                    row_counts[name.removesuffix(".parquet")] = n
        manifest = artifacts.Manifest(
            kind="tpm_embedding_set", artifact_id=str(plan.month), logical_date=plan.logical_date.isoformat(),
            data_window=plan.data_window.to_dict(), months=[str(m) for m in plan.snapshot_months],
            inputs=artifacts.Inputs(delta_tables={paths.tpm_features(): version}),
            row_counts=row_counts, metrics=metrics,
            params={"dim": settings.tpm.embedding_dim, "train_months": [str(m) for m in plan.train_months],
                    "hidden_units": settings.tpm.hidden_units, "learning_rate": settings.tpm.learning_rate},
        )
        published = artifacts.publish(store, prefix, files, manifest)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return TrainResult("tpm", prefix, plan.logical_date.isoformat(), False, published.metrics,
                       {"months": published.months, "rows": row_counts}, round(time.perf_counter() - t0, 2))


# ------------------------------------------------------------------ CPM
def train_cpm(settings: Settings, monday: str | dt.date, *, force: bool = False) -> TrainResult:
    _quiet_tf()
    from . import embedding_sets
    from .inputs import FeatureLayout, to_arrays
    from .models import build_complete_model, compile_model

    t0 = time.perf_counter()
    plan = calendar.cpm_plan(monday, settings.calendar)
    store = open_store(settings.store)
    prefix = paths.cpm_checkpoint(plan.monday)
    who = f"train cpm {plan.monday}"
    existing = artifacts.find_manifest(store, prefix)
    if existing is not None and not force:
        return TrainResult("cpm", prefix, plan.monday.isoformat(), True, existing.metrics)
    set_manifest = embedding_sets.resolve(store, plan.embedding_set, consumer=who)
    calendar.check_non_overlap(plan.embedding_set, set_manifest.months, plan.window, tier=f"CPM {plan.monday}")
    hist = embedding_sets.load(store, set_manifest)
    f = settings.features
    layout = FeatureLayout("complete", f.max_seq_len, tuple(f.counter_windows_days))
    table, version = read_features(store, paths.complete_features("natural"), plan.window, layout, who=who)
    arrays = to_arrays(table, layout)
    day = np.asarray(table["dt"].to_numpy(zero_copy_only=False)).astype(str)
    is_eval = day >= plan.eval_window.start.isoformat()
    train, holdout = _split(arrays, ~is_eval), _split(arrays, is_eval)
    _seed(settings.cpm.seed)
    model = compile_model(build_complete_model(settings.cpm, f, hist, name="cpm"), settings.cpm.learning_rate)
    fit = _fit(model, train, batch_size=settings.cpm.batch_size, epochs=settings.cpm.epochs, seed=settings.cpm.seed,
               label=who)
    metrics = {**_evaluate(model, holdout), "train_loss": fit.get("loss")}
    scratch = scratch_dir(settings.store, "ecdctr-cpm-")
    try:
        path = _save_model(model, scratch)
        manifest = artifacts.Manifest(
            kind="cpm_checkpoint", artifact_id=plan.monday.isoformat(), logical_date=plan.monday.isoformat(),
            data_window=plan.window.to_dict(), months=[str(m) for m in plan.window.months()],
            inputs=artifacts.Inputs(delta_tables={paths.complete_features("natural"): version},
                                    embedding_set=plan.embedding_set, embedding_months=list(set_manifest.months)),
            row_counts={"train": int(len(train["click"])), "eval": int(len(holdout["click"]))},
            metrics=metrics,
            params={"train_window": plan.train_window.to_dict(), "eval_window": plan.eval_window.to_dict(),
                    **settings.cpm.model_dump()},
        )
        published = artifacts.publish(store, prefix, {MODEL_FILE: path}, manifest)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return TrainResult("cpm", prefix, plan.monday.isoformat(), False, published.metrics,
                       {"embedding_set": plan.embedding_set, "embedding_months": list(set_manifest.months)},
                       round(time.perf_counter() - t0, 2))


# ------------------------------------------------------------------ A-CTR
def resolve_cpm(store: ArtifactStore, plan: calendar.ACTRPlan) -> tuple[artifacts.Manifest, bool]:
    """The CPM checkpoint an A-CTR run uses: the plan's Monday, else the allowed fallback.

    Returns (manifest, fallback_used). Raises :class:`CheckpointMissing` naming what is absent.
    """
    primary = artifacts.find_manifest(store, paths.cpm_checkpoint(plan.cpm_monday))
    if primary is not None:
        return primary, False
    if plan.fallback_monday is not None:
        fb = artifacts.find_manifest(store, paths.cpm_checkpoint(plan.fallback_monday))
        if fb is not None:
            return fb, True
        raise CheckpointMissing(f"A-CTR {plan.day}: neither CPM checkpoint W={plan.cpm_monday} nor the fallback "
                                f"W={plan.fallback_monday} is published")
    raise CheckpointMissing(f"A-CTR {plan.day}: CPM checkpoint W={plan.cpm_monday} is not published and the "
                            f"previous one (W={plan.cpm_monday - dt.timedelta(days=7)}) is older than "
                            f"max_cpm_staleness_days={plan.max_cpm_staleness_days}")


def chosen_cpm(store: ArtifactStore, plan: calendar.ACTRPlan, monday: str | dt.date) -> tuple[artifacts.Manifest, bool]:
    """The CPM checkpoint a sensor chose (``--cpm``), checked against the plan, never re-chosen:
    it must be the plan's Monday or its allowed fallback, and published. Returns (manifest, fallback)."""
    w = calendar.parse_date(monday, what="--cpm")
    allowed = [plan.cpm_monday] + ([plan.fallback_monday] if plan.fallback_monday else [])
    if w not in allowed:
        fb = f"its allowed fallback W={plan.fallback_monday}" if plan.fallback_monday else \
            f"a fallback (none allowed: max_cpm_staleness_days={plan.max_cpm_staleness_days})"
        raise calendar.CalendarError(f"A-CTR {plan.day}: --cpm {w} is neither the plan's CPM checkpoint "
                                     f"W={plan.cpm_monday} nor {fb}")
    m = artifacts.find_manifest(store, paths.cpm_checkpoint(w))
    if m is None:
        raise CheckpointMissing(f"A-CTR {plan.day}: the chosen CPM checkpoint W={w} is not published")
    return m, w != plan.cpm_monday


def _ad_data(settings: Settings, store: ArtifactStore, plan: calendar.ACTRPlan, who: str):
    from .inputs import FeatureLayout, to_arrays

    f = settings.features
    layout = FeatureLayout("complete", f.max_seq_len, tuple(f.counter_windows_days))
    table, version = read_features(store, paths.complete_features("ad"), plan.window, layout, who=who)
    arrays = to_arrays(table, layout)
    day = np.asarray(table["dt"].to_numpy(zero_copy_only=False)).astype(str)
    is_holdout = day >= plan.holdout_window.start.isoformat()
    return _split(arrays, ~is_holdout), _split(arrays, is_holdout), version


def served_baseline(store: ArtifactStore, before: dt.date) -> tuple[str, artifacts.Manifest] | None:
    """The model the blessing gate compares with: the latest serving version's A-CTR model, else the
    latest blessed A-CTR model before ``before``."""
    from .serving import read_served

    served = read_served(store).get("version")
    m = artifacts.find_manifest(store, paths.serving_version(served)) if served else None
    if m is not None:
        if m.inputs.actr_model:
            prefix = paths.actr_model(m.inputs.actr_model)
            am = artifacts.find_manifest(store, prefix)
            if am is not None:
                return prefix, am
    blessed = [(p, m) for p, m in artifacts.list_artifacts(store, "actr_model")
               if m.extra.get("blessed") and m.logical_date < before.isoformat()]
    return max(blessed, key=lambda pm: pm[1].logical_date) if blessed else None


def train_actr(settings: Settings, day: str | dt.date, *, force: bool = False,
               policy: str | None = None, cpm: str | dt.date | None = None) -> TrainResult:
    """Fine-tune A-CTR for ``day``. ``cpm``: the checkpoint the DAG's sensor chose (recorded in the
    manifest as chosen by the sensor); without it the trainer resolves the plan's (manual runs)."""
    _quiet_tf()
    from . import embedding_sets
    from .metrics import MetricError, is_blessed
    from .models import build_complete_model, compile_model
    from .transfer import warm_start

    t0 = time.perf_counter()
    plan = calendar.actr_plan(day, settings.calendar)
    store = open_store(settings.store)
    prefix = paths.actr_model(plan.day)
    who = f"train actr {plan.day}"
    existing = artifacts.find_manifest(store, prefix)
    if existing is not None and not force:
        return TrainResult("actr", prefix, plan.day.isoformat(), True, existing.metrics, dict(existing.extra))
    if cpm is None:
        cpm_manifest, fallback = resolve_cpm(store, plan)
    else:
        cpm_manifest, fallback = chosen_cpm(store, plan, cpm)
    cpm_choice = {"checkpoint": cpm_manifest.artifact_id, "fallback": fallback,
                  "chosen_by": "resolver (no --cpm)" if cpm is None else "--cpm (the wait_for_cpm sensor)"}
    set_id = cpm_manifest.inputs.embedding_set
    calendar.check_non_overlap(set_id, cpm_manifest.inputs.embedding_months, plan.train_window,
                               tier=f"A-CTR {plan.day}")
    hist = embedding_sets.load(store, embedding_sets.resolve(store, set_id, consumer=who))
    train, holdout, version = _ad_data(settings, store, plan, who)
    cpm_prefix = paths.cpm_checkpoint(cpm_manifest.artifact_id)
    cpm_model = load_model(store, cpm_prefix, cpm_manifest)
    _seed(settings.actr.seed)
    model = build_complete_model(settings.cpm, settings.features, hist, name="actr")
    report = warm_start(model, cpm_model, policy or settings.actr.transfer_policy)
    compile_model(model, settings.actr.learning_rate)
    fit = _fit(model, train, batch_size=settings.actr.batch_size, epochs=settings.actr.epochs,
               seed=settings.actr.seed, label=who)
    metrics = {**_evaluate(model, holdout), "train_loss": fit.get("loss")}
    baseline = served_baseline(store, plan.day)
    baseline_info = None
    if baseline is not None:
        b_prefix, b_manifest = baseline
        try:
            b_metrics = _evaluate(load_model(store, b_prefix, b_manifest), holdout)
            baseline_info = {"model": b_manifest.artifact_id, "gauc": b_metrics["gauc"]}
        except MetricError as exc:
            baseline_info = {"model": b_manifest.artifact_id, "gauc": None, "error": str(exc)}
    blessed = is_blessed(metrics["gauc"], baseline_info and baseline_info["gauc"], settings.actr.bless_tolerance)
    gate = {"blessed": blessed, "candidate_gauc": metrics["gauc"], "baseline": baseline_info,
            "tolerance": settings.actr.bless_tolerance}
    scratch = scratch_dir(settings.store, "ecdctr-actr-")
    try:
        path = _save_model(model, scratch)
        eval_json = json.dumps({"holdout": plan.holdout_window.to_dict(), "metrics": metrics, "gate": gate},
                               indent=2).encode()
        manifest = artifacts.Manifest(
            kind="actr_model", artifact_id=plan.day.isoformat(), logical_date=plan.day.isoformat(),
            data_window=plan.window.to_dict(), months=[str(m) for m in plan.window.months()],
            inputs=artifacts.Inputs(delta_tables={paths.complete_features("ad"): version}, embedding_set=set_id,
                                    embedding_months=list(cpm_manifest.inputs.embedding_months),
                                    cpm_checkpoint=cpm_manifest.artifact_id),
            row_counts={"train": int(len(train["click"])), "holdout": int(len(holdout["click"]))},
            metrics=metrics,
            params={"train_window": plan.train_window.to_dict(), "holdout_window": plan.holdout_window.to_dict(),
                    "learning_rate": settings.actr.learning_rate, "epochs": settings.actr.epochs,
                    "batch_size": settings.actr.batch_size},
            extra={"blessed": blessed, "gate": gate, "cpm_choice": cpm_choice, "warm_start": report},
        )
        published = artifacts.publish(store, prefix, {MODEL_FILE: path, "eval.json": eval_json}, manifest)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return TrainResult("actr", prefix, plan.day.isoformat(), False, published.metrics,
                       {"blessed": blessed, "gate": gate, "cpm_checkpoint": cpm_manifest.artifact_id,
                        "cpm_choice": cpm_choice, "embedding_set": set_id},
                       round(time.perf_counter() - t0, 2))


def train_target_only(settings: Settings, day: str | dt.date) -> dict:
    """Target-only baseline: same network, random init, no TPM inputs, same ad window; holdout metrics."""
    _quiet_tf()
    from .models import build_complete_model, compile_model

    plan = calendar.actr_plan(day, settings.calendar)
    store = open_store(settings.store)
    train, holdout, version = _ad_data(settings, store, plan, f"target-only {plan.day}")
    _seed(settings.actr.seed)
    model = compile_model(build_complete_model(settings.cpm, settings.features, None, name="target_only"),
                          settings.actr.learning_rate)
    _fit(model, train, batch_size=settings.actr.batch_size, epochs=settings.actr.epochs, seed=settings.actr.seed,
         label=f"target-only {plan.day}")
    return _evaluate(model, holdout)


def evaluate_day(settings: Settings, day: str | dt.date) -> dict:
    """Holdout metrics of the published A-CTR model of ``day`` and of a Target-only model."""
    plan = calendar.actr_plan(day, settings.calendar)
    store = open_store(settings.store)
    prefix = paths.actr_model(plan.day)
    manifest = artifacts.read_manifest(store, prefix)
    _, holdout, _ = _ad_data(settings, store, plan, f"evaluate {plan.day}")
    actr = _evaluate(load_model(store, prefix, manifest), holdout)
    target = train_target_only(settings, plan.day)
    report = {"day": plan.day.isoformat(), "holdout": plan.holdout_window.to_dict(), "actr": actr,
              "target_only": target, "gauc_lift": actr["gauc"] - target["gauc"],
              "blessed": manifest.extra.get("blessed"), "cpm_checkpoint": manifest.inputs.cpm_checkpoint,
              "embedding_set": manifest.inputs.embedding_set}
    store.put_bytes(paths.evaluation_report(plan.day), json.dumps(report, indent=2).encode())
    return report
