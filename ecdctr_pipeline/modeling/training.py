"""The training API every tier uses, in the manner of TFX's ``FnArgs``/``run_fn``.

* :class:`TrainArgs` — everything one training run needs, resolved before it starts by the
  tier's resolver (:mod:`ecdctr_pipeline.tiers`): the plan, the feature table and the Delta
  version read (pinned), the embedding-set manifest, the base model (A-CTR's CPM checkpoint),
  the architecture and the hyper-parameters, and the store.
* A tier's ``run_training(args) -> TrainResult`` only trains and returns (a Keras model or
  the files it produced, train metrics, row counts). Holdout evaluation and blessing are in
  :mod:`ecdctr_pipeline.evaluation`; :func:`publish` is the one place any tier publishes.

Plus the helpers the tiers share: reading a window of a feature table at a pinned version,
fitting and scoring through the shared input pipeline, saving and loading Keras models.
"""

from __future__ import annotations

import datetime as dt
import logging
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ecdctr_pipeline.core import calendar
from ecdctr_pipeline.core.errors import EcdctrError
from ecdctr_pipeline.core.settings import TrainingSettings
from ecdctr_pipeline.data import artifacts, delta
from ecdctr_pipeline.data.store import ArtifactStore
from ecdctr_pipeline.modeling.preprocessing import LABEL, FeatureLayout

log = logging.getLogger(__name__)

MODEL_FILE = "model.keras"
KINDS = {"tpm": "tpm_embedding_set", "cpm": "cpm_checkpoint", "actr": "actr_model"}


class TrainingError(EcdctrError):
    """Training cannot run (missing features, empty month, ...)."""


@dataclass(frozen=True)
class HParams:
    learning_rate: float
    batch_size: int
    epochs: int  # TPM: epochs per month
    seed: int


@dataclass(frozen=True)
class DataSpec:
    """A feature table at one Delta version, and the windows a run reads from it."""

    table: str
    version: int
    train_window: calendar.Window
    eval_window: calendar.Window | None  # CPM's tail / A-CTR's holdout; None for TPM
    layout: FeatureLayout
    empty_days: tuple[str, ...] = ()  # days of the windows recorded as having no impressions


@dataclass(frozen=True)
class TrainArgs:
    """One resolved training run (the tier's ``FnArgs``)."""

    tier: str  # "tpm" | "cpm" | "actr" | "target_only"
    who: str  # names the run in messages, e.g. "train actr 2026-11-24"
    logical_date: str
    artifact_id: str
    artifact: str  # store prefix it publishes to (None-like "" for runs that never publish)
    plan: Any  # calendar.TPMPlan | CPMPlan | ACTRPlan
    data: DataSpec
    hparams: HParams
    model: Any  # architecture settings: TPMSettings | CPMSettings
    features: Any  # FeatureSettings
    store: ArtifactStore = field(repr=False)
    embedding_set: artifacts.Manifest | None = None
    base_model: artifacts.Manifest | None = None  # A-CTR: the CPM checkpoint it starts from
    base_prefix: str | None = None
    transfer_policy: str | None = None
    data_window: calendar.Window | None = None  # recorded in the manifest (default: the data's windows)
    months: tuple[str, ...] = ()  # recorded in the manifest
    params: dict = field(default_factory=dict)  # recorded in the manifest
    lineage: dict = field(default_factory=dict)  # recorded in the manifest's extra (e.g. cpm_choice)
    raw_inputs: dict = field(default_factory=dict)  # inputs.raw_tables: the raw days the features came from
    training: Any = field(default_factory=TrainingSettings)  # input pipeline and distribution
    # experiments' variants only (never published): in-memory TPM tables used instead of loading
    # ``embedding_set`` (a set's last k months, or a set trained with another dimension)
    historical: Any = field(default=None, repr=False)


def historical_tables(args: TrainArgs):
    """The TPM tables the complete network of ``args`` consumes, or None (no TPM inputs)."""
    if args.historical is not None:
        return args.historical
    if args.embedding_set is None:
        return None
    from ecdctr_pipeline.data import embedding_sets

    return embedding_sets.load(args.store, args.embedding_set)


@dataclass
class TrainResult:
    """What ``run_training`` returns: a model or produced files, and what training measured."""

    model: Any = None  # keras.Model (CPM, A-CTR)
    files: dict[str, Path] = field(default_factory=dict)  # produced files (TPM's tables)
    train_metrics: dict[str, float | None] = field(default_factory=dict)
    row_counts: dict[str, int] = field(default_factory=dict)
    extra: dict = field(default_factory=dict)
    scratch: Path | None = None  # local folder holding ``files``; removed by :meth:`cleanup`

    def cleanup(self) -> None:
        if self.scratch is not None:
            shutil.rmtree(self.scratch, ignore_errors=True)


@dataclass
class TierRun:
    """The outcome of ``ecdctr train <tier>``: published (or already there), with its metrics."""

    tier: str
    artifact: str  # store prefix
    logical_date: str
    skipped: bool
    metrics: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


# ------------------------------------------------------------------ data
def pinned_version(store: ArtifactStore, table: str, windows: list[calendar.Window], *, who: str,
                   schema, max_empty: int = 0) -> tuple[int, tuple[str, ...]]:
    """The current version of ``table`` after checking it was written under the feature ``schema``
    (:class:`~ecdctr_pipeline.core.schema.FeatureSchema`), that every day of ``windows`` (a run's
    train and held-out windows, adjacent) is present, and the days among them recorded as having no
    impressions (at most ``max_empty`` for the run, as for the extraction of its whole window)."""
    from ecdctr_pipeline.data import empty_days

    delta.require_schema(store, table, schema, who=who)

    present = set(delta.partitions(store, table))
    whole = calendar.Window(min(w.start for w in windows), max(w.end for w in windows))
    accepted, missing = empty_days.accept(store, table, whole, [d for w in windows for d in w.partitions()
                                                                if d not in present], max_empty=max_empty, who=who)
    if missing:
        window = next(w for w in windows if missing[0] in w.partitions())
        raise TrainingError(f"{who}: {table} has no partition {missing[0]} (window {window}); "
                            "run the extraction first")
    version = delta.version(store, table)
    if version is None:
        raise TrainingError(f"{who}: {table} does not exist; run the extraction first")
    return version, accepted


def read_window(store: ArtifactStore, data: DataSpec, window: calendar.Window, *, who: str):
    """The rows of ``window`` of ``data.table`` at ``data.version`` (an Arrow table, ``dt`` included)."""
    cols = list(dict.fromkeys(list(data.layout.columns) + ["dt"]))
    table, _ = delta.read(store, data.table, partitions=window.partitions(), columns=cols, version=data.version)
    missing = sorted(set(window.partitions()) - set(table.column("dt").unique().to_pylist()) - set(data.empty_days))
    if missing:
        raise TrainingError(f"{who}: {data.table}@v{data.version} has no partition {missing[0]} (window {window}); "
                            "run the extraction first")
    return table


def open_source(args: "TrainArgs", window: calendar.Window):
    """The streaming :class:`~ecdctr_pipeline.modeling.streaming.WindowSource` of ``window`` of the
    run's table at its pinned version."""
    from ecdctr_pipeline.modeling import streaming

    return streaming.open_source(args.store, args.data, window, who=args.who)


def read_features(store: ArtifactStore, table: str, window: calendar.Window, layout: FeatureLayout, *, who: str,
                  version: int | None = None):
    """Every day of ``window`` of ``table`` at ``version`` (default: its current one; a model's
    recorded version reads the rows it was judged on): ``(Arrow table, version)``."""
    current, empty = pinned_version(store, table, [window], who=who, schema=layout.schema)
    version = current if version is None else version
    data = DataSpec(table, version, window, None, layout, empty)
    return read_window(store, data, window, who=who), version


# ------------------------------------------------------------------ fit / predict
def quiet_tf() -> None:
    import os

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def set_seed(seed: int) -> None:
    import keras

    keras.utils.set_random_seed(seed)


def placement(args: "TrainArgs"):
    """The process's :class:`~ecdctr_pipeline.modeling.distribute.Placement` for this run (build
    and compile the model under ``placement(args).strategy.scope()``)."""
    from ecdctr_pipeline.modeling import distribute

    return distribute.placement(args.training.distribution)


def fit(model, source, layout: FeatureLayout, *, hparams: HParams, training, label: str, first_epoch: int = 0,
        callbacks: tuple = (), validation=None) -> dict:
    """Train ``model`` on a streaming ``source`` (a
    :class:`~ecdctr_pipeline.modeling.streaming.WindowSource`) for epochs ``first_epoch`` ..
    ``hparams.epochs - 1`` under the run's placement; returns the last epoch's metrics.

    With a ``validation`` source (see :func:`training_sources`) the loss on it is computed after
    every epoch, training stops once it has not improved for ``training.early_stopping_patience``
    epochs, and the best epoch's weights are restored; the metrics then add ``epochs_run``,
    ``best_epoch`` (1-based) and ``best_val_loss``.

    On one device the stream is one pass an epoch (the last batch may be short). With several
    replicas each input pipeline (one per worker) reads its own shard of the files endlessly and
    an epoch is ``ceil(rows / global batch)`` steps, so the replicas stay in lockstep; a shard's
    rows left over at an epoch's end start the next one."""
    from ecdctr_pipeline.modeling import distribute, streaming

    place = distribute.placement(training.distribution)
    hp = hparams

    endless = place.replicas > 1

    def make(index: int, count: int, batch: int):
        return streaming.make_dataset(source.shard(index, count), layout, batch, shuffle=True, seed=hp.seed,
                                      buffer_rows=training.shuffle_buffer_rows, read_rows=training.read_batch_rows,
                                      first_epoch=first_epoch, repeat=endless,
                                      cache_bytes=training.input_cache_mb * 2**20)

    ds = distribute.distribute(place, make, hp.batch_size)
    if endless:
        distribute.build_state(model, place)
    n_batches = -(-source.num_rows // hp.batch_size)
    steps = n_batches if endless else None
    log.info("%s: %s, %d batches x %d epoch(s) on %s", label, source.describe(), n_batches, hp.epochs,
             place.describe())
    callbacks, val, val_steps, stopper = list(callbacks), None, None, None
    if validation is not None:
        import keras

        val_size = {"val_rows": validation.num_rows, "val_clicks": int(validation.column(LABEL).sum())}

        def make_val(index: int, count: int, batch: int):
            return streaming.make_dataset(validation.shard(index, count), layout, batch, shuffle=False,
                                          read_rows=training.read_batch_rows, repeat=endless,
                                          cache_bytes=training.input_cache_mb * 2**20)

        val = distribute.distribute(place, make_val, hp.batch_size)
        val_steps = -(-validation.num_rows // hp.batch_size) if endless else None
        stopper = keras.callbacks.EarlyStopping(monitor="val_loss", patience=training.early_stopping_patience,
                                                restore_best_weights=True)
        callbacks.append(stopper)
        log.info("%s: early stopping on %s (patience %d)", label, validation.describe(),
                 training.early_stopping_patience)
    chatty = log.isEnabledFor(logging.INFO)  # per-epoch lines with -v (and in task logs), else one bar
    if not chatty:
        callbacks.append(_epoch_bar(label, hp.epochs - first_epoch))
    hist = model.fit(ds, epochs=hp.epochs, initial_epoch=first_epoch, steps_per_epoch=steps, shuffle=False,
                     validation_data=val, validation_steps=val_steps, callbacks=callbacks,
                     verbose=2 if chatty and n_batches > 20 else 0)
    out = {k: float(v[-1]) for k, v in hist.history.items()}
    # the curves of this call's epochs (a resumed run's start at `first_epoch`)
    out.update({f"{k}_curve": [round(float(x), 6) for x in v] for k, v in hist.history.items()
                if k in ("loss", "val_loss")}, first_epoch=first_epoch, max_epochs=hp.epochs)
    if stopper is not None:
        out.update(val_size)
        out.update(epochs_run=first_epoch + len(hist.epoch), best_epoch=int(stopper.best_epoch) + 1,
                   best_val_loss=float(stopper.best))
    settled = settle_batchnorm(model, source, layout, hp, training)
    if settled and val is not None:  # the kept weights' validation loss with the settled statistics
        settled["settled_val_loss"] = float(model.evaluate(val, steps=val_steps, verbose=0, return_dict=True)["loss"])
    out.update(settled)
    return out


def settle_batchnorm(model, source, layout: FeatureLayout, hp: HParams, training: TrainingSettings) -> dict:
    """The trained model's BatchNorm statistics set to the training window's population
    statistics (:mod:`ecdctr_pipeline.modeling.batchnorm`; ``training.bn_settle_rows`` bounds the
    rows, 0 keeps the moving averages). Every worker computes the same statistics from the
    whole window, unshuffled."""
    from ecdctr_pipeline.modeling import batchnorm, streaming

    if training.bn_settle_rows <= 0 or not batchnorm._blocks(model):
        return {}
    ds = streaming.make_dataset(source, layout, hp.batch_size, shuffle=False, read_rows=training.read_batch_rows)
    return batchnorm.settle(model, ds, num_rows=source.num_rows, batch_size=hp.batch_size,
                            rows=training.bn_settle_rows)


def _epoch_bar(label: str, epochs: int):
    """A Keras callback showing one progress bar of a fit's epochs (with the last loss)."""
    import keras

    from ecdctr_pipeline.core.report import progress

    class EpochBar(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.bar = progress(None, desc=label, total=epochs, unit="epoch")

        def on_epoch_end(self, epoch, logs=None):
            if logs and "loss" in logs:
                self.bar.set_postfix(loss=f"{float(logs['loss']):.4f}", refresh=False)
            self.bar.update(1)

        def on_train_end(self, logs=None):
            self.bar.close()

    return EpochBar()


def train_metrics(fit_metrics: dict) -> dict:
    """What a run records of its training: the last epoch's loss, the loss curves (training and,
    with early stopping, validation, one value an epoch), with early stopping the epochs run, the
    best epoch and its validation loss, and how far the BatchNorm moving averages were from the
    settled statistics (``bn_gap``, :mod:`~ecdctr_pipeline.modeling.batchnorm`)."""
    out = {"train_loss": fit_metrics.get("loss")}
    out.update({k: fit_metrics[k] for k in ("epochs_run", "best_epoch", "best_val_loss", "max_epochs", "first_epoch",
                                            "loss_curve", "val_loss_curve", "bn_gap", "bn_var_ratio", "bn_rows",
                                            "settled_val_loss", "val_rows", "val_clicks")
                if k in fit_metrics})
    return out


def training_sources(args: "TrainArgs"):
    """``(fit source, validation source or None)`` of a complete-model run: with
    ``training.validation_days`` N > 0 the last N days of the run's training window are held out
    for early stopping (never the run's evaluation or holdout window)."""
    w, n = args.data.train_window, args.training.validation_days
    if n <= 0:
        return open_source(args, w), None
    if n >= w.days:
        raise TrainingError(f"{args.who}: training.validation_days={n} leaves no training day in {w}")
    n = validation_length(args, n)
    cut = w.end - dt.timedelta(days=n)
    return open_source(args, calendar.Window(w.start, cut)), open_source(args, calendar.Window(cut, w.end))


def validation_length(args: "TrainArgs", n: int) -> int:
    """The days of the validation slice: ``n``, grown day by day (back from the window's end)
    until it holds ``training.validation_min_clicks`` clicks, never past half the window (a
    warning says when even that holds fewer)."""
    want = args.training.validation_min_clicks
    w = args.data.train_window
    if want <= 0:
        return n
    most = max(n, w.days // 2)
    clicks = 0
    for k in range(n, most + 1):
        clicks = int(open_source(args, calendar.Window(w.end - dt.timedelta(days=k), w.end)).column(LABEL).sum())
        if clicks >= want:
            if k > n:
                log.info("%s: validation slice of %d days (%d clicks >= training.validation_min_clicks %d)",
                         args.who, k, clicks, want)
            return k
    log.warning("%s: the validation slice's %d days (half the window) hold %d clicks, fewer than "
                "training.validation_min_clicks %d", args.who, most, clicks, want)
    return most


def predict(model, arrays: dict[str, np.ndarray], layout: FeatureLayout, batch_size: int = 8192) -> np.ndarray:
    """Scores of raw columns through the shared preprocessing graph."""
    from ecdctr_pipeline.modeling.inputs import make_dataset

    if LABEL not in arrays:
        arrays = {**arrays, LABEL: np.zeros(len(next(iter(arrays.values()))), np.float32)}
    ds = make_dataset(arrays, layout, batch_size, shuffle=False).map(lambda x, y: x)
    return model.predict(ds, verbose=0).reshape(-1)


# ------------------------------------------------------------------ resume after a killed run
def run_fingerprint(args: TrainArgs) -> str:
    """What a checkpoint may be resumed into: the same run (artifact, data version, inputs,
    hyper-parameters, architecture, code version)."""
    import hashlib
    import json

    ident = {"artifact": args.artifact, "table": args.data.table, "version": args.data.version,
             "hparams": asdict(args.hparams), "model": args.model.model_dump(mode="json"),
             "embedding_set": args.embedding_set.attempt if args.embedding_set else None,
             "base_model": args.base_model.attempt if args.base_model else None,
             "policy": args.transfer_policy, "code": artifacts.code_version(),
             "early_stopping": [args.training.validation_days, args.training.early_stopping_patience,
                                args.training.validation_min_clicks, args.training.bn_settle_rows]}
    return hashlib.sha256(json.dumps(ident, sort_keys=True, default=str).encode()).hexdigest()[:16]


def fit_resumable(args: TrainArgs, model, source, validation=None) -> tuple[Any, dict, int]:
    """:func:`fit` with a checkpoint in the store after every epoch (the model with its optimizer
    state, then ``state.json``), written by the chief worker. A run of the same
    :func:`run_fingerprint` that finds one — a pod killed mid-epoch and started again — continues
    from the epoch after it. Returns ``(model, last epoch's metrics, epoch resumed from or -1)``;
    :func:`clear_resume` removes the checkpoint once the artifact is published."""
    import json

    import keras

    from ecdctr_pipeline.core import paths
    from ecdctr_pipeline.modeling import layers  # noqa: F401 - custom layers for load_model

    hp, store = args.hparams, args.store
    place = placement(args)
    prefix, fp = paths.resume_state(args.artifact), run_fingerprint(args)
    start = 0
    try:
        state = json.loads(store.get_bytes(f"{prefix}/state.json"))
    except FileNotFoundError:
        state = None
    scratch = store.scratch_dir("ecdctr-resume-")
    try:
        if state and state.get("fingerprint") == fp:
            local = scratch / "resume.keras"
            store.download_file(f"{prefix}/{state['model']}", local)
            with place.strategy.scope():
                model = keras.models.load_model(local, compile=True)
            start = int(state["epoch"]) + 1
            log.info("%s: resuming after epoch %d of %d from %s", args.who, start, hp.epochs, store.uri(prefix))
        elif state and place.is_chief:
            log.info("%s: ignoring a checkpoint of another run at %s", args.who, store.uri(prefix))
            store.delete_prefix(prefix)

        class _Checkpoint(keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                if not place.is_chief:
                    return
                name = f"epoch-{epoch}.keras"
                path = scratch / name
                self.model.save(path)
                store.upload_file(path, f"{prefix}/{name}")
                store.put_bytes(f"{prefix}/state.json", json.dumps(
                    {"fingerprint": fp, "epoch": epoch, "model": name, "of": hp.epochs}).encode())
                if epoch > 0:
                    store.delete(f"{prefix}/epoch-{epoch - 1}.keras")
                path.unlink(missing_ok=True)

        if start < hp.epochs:
            metrics = fit(model, source, args.data.layout, hparams=hp, training=args.training, label=args.who,
                          first_epoch=start, callbacks=(_Checkpoint(),), validation=validation)
        else:  # every epoch was checkpointed before the kill: only the statistics are left to settle
            metrics = settle_batchnorm(model, source, args.data.layout, hp, args.training)
        return model, metrics, start - 1 if start else -1
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def clear_resume(args: TrainArgs) -> None:
    from ecdctr_pipeline.core import paths

    if args.artifact:
        args.store.delete_prefix(paths.resume_state(args.artifact))


# ------------------------------------------------------------------ models in the store
def save_model(model, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / MODEL_FILE
    model.save(path)
    return path


def load_model(store: ArtifactStore, prefix: str, manifest: artifacts.Manifest | None = None):
    """A published Keras model (verified against its manifest)."""
    import keras

    from ecdctr_pipeline.modeling import layers  # noqa: F401 - registers the custom layers

    manifest = manifest or artifacts.read_manifest(store, prefix)
    tmp = Path(tempfile.mkdtemp(prefix="ecdctr-model-"))
    try:
        data = artifacts.load_bytes(store, prefix, MODEL_FILE, manifest)
        path = tmp / MODEL_FILE
        path.write_bytes(data)
        return keras.models.load_model(path, compile=False)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# ------------------------------------------------------------------ publish (every tier)
def publish(args: TrainArgs, result: TrainResult, *, metrics: dict, blessing: artifacts.Blessing | None = None,
            files: dict[str, Any] | None = None) -> artifacts.Manifest:
    """Publish a run's artifact with its lineage: the model (or the produced files), the
    manifest recording the table version read, the embedding set, the CPM checkpoint, metrics
    and the blessing record."""
    out = dict(result.files)
    scratch = args.store.scratch_dir(f"ecdctr-{args.tier}-")
    try:
        if result.model is not None:
            out[MODEL_FILE] = save_model(result.model, scratch)
        out.update(files or {})
        window = args.data_window or calendar.Window(
            args.data.train_window.start, (args.data.eval_window or args.data.train_window).end)
        es = args.embedding_set
        manifest = artifacts.Manifest(
            kind=KINDS[args.tier], artifact_id=args.artifact_id, logical_date=args.logical_date,
            data_window=window.to_dict(), months=list(args.months or (str(m) for m in window.months())),
            inputs=artifacts.Inputs(delta_tables={args.data.table: args.data.version},
                                    embedding_set=es.artifact_id if es else None,
                                    embedding_months=list(es.months) if es else [],
                                    cpm_checkpoint=args.base_model.artifact_id if args.base_model else None,
                                    raw_tables=args.raw_inputs),
            row_counts=result.row_counts, metrics=metrics, params=args.params, blessing=blessing,
            feature_schema=args.data.layout.schema.identity.to_dict(), extra={**args.lineage, **result.extra},
        )
        return artifacts.publish(args.store, args.artifact, out, manifest)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def elapsed(t0: float) -> float:
    import time

    return round(time.perf_counter() - t0, 2)
