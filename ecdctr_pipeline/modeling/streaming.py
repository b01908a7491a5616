"""Streaming input: the trainers and the holdout evaluation read the Parquet files of the pinned
Delta version record batch by record batch, so peak memory follows the shuffle buffer, not the
window.

* :class:`WindowSource` — the files (fragments) of one window of a feature table at one Delta
  version, with their row counts from the Parquet footers; :meth:`WindowSource.shard` splits
  them between input pipelines (workers) by whole files, balancing rows.
* :func:`raw_batches` — raw-column batches (the dict :func:`~.preprocessing.raw_columns` makes)
  of exactly ``batch_size`` rows (the last one may be short). Shuffling is bounded: the file
  order is permuted per epoch, and rows are permuted inside a buffer of at most
  ``buffer_rows`` + one record batch; after each draw half of the buffer stays to mix with the
  next files. Nothing is dropped: every row of the shard is yielded once per pass.
* :func:`make_dataset` — the ``tf.data.Dataset`` over :func:`raw_batches`, mapped through the
  shared preprocessing graph (:func:`~.preprocessing.transform`, the one serving runs) and
  prefetched; each iteration (epoch) reshuffles with ``seed + epoch``.
* :func:`score_stream` — predictions, labels and user ids of a whole source, batch by batch
  (three flat NumPy arrays: what GAUC needs and nothing else).
"""

from __future__ import annotations

import logging
import weakref
from dataclasses import dataclass, field
from typing import Any, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.dataset as pads

from ecdctr_pipeline.core import calendar
from ecdctr_pipeline.core.errors import EcdctrError
from ecdctr_pipeline.data import delta
from ecdctr_pipeline.data.store import ArtifactStore
from ecdctr_pipeline.modeling.preprocessing import LABEL, FeatureLayout, raw_columns

log = logging.getLogger(__name__)

READ_BATCH_ROWS = 8192
BUFFER_ROWS = 65_536


class StreamError(EcdctrError):
    """A source that cannot be streamed as asked (no rows, fewer files than workers)."""


@dataclass(frozen=True)
class WindowSource:
    """The Parquet fragments of ``window`` of ``table`` at Delta ``version``."""

    table: str
    version: int
    window: calendar.Window
    fragments: tuple[Any, ...] = field(repr=False)
    rows: tuple[int, ...]
    shard_of: tuple[int, int] = (0, 1)  # (index, count)

    @classmethod
    def open(cls, store: ArtifactStore, table: str, version: int, window: calendar.Window) -> "WindowSource":
        ds = delta.dataset(store, table, window.partitions(), version=version)
        frags = sorted(ds.get_fragments(), key=lambda f: f.path)
        rows = []
        for f in frags:  # every file's footer is read here: a missing or damaged file fails before training
            try:
                rows.append(int(f.count_rows()))
            except Exception as exc:  # noqa: BLE001 - missing, not Parquet, cut short
                raise delta.data_file_error(store, table, version, f.path, exc) from None
        return cls(table, version, window, tuple(frags), tuple(rows))

    @property
    def num_rows(self) -> int:
        return sum(self.rows)

    def describe(self) -> str:
        i, n = self.shard_of
        shard = f", shard {i + 1}/{n}" if n > 1 else ""
        return f"{self.table}@v{self.version} {self.window} ({len(self.fragments)} file(s), {self.num_rows} rows{shard})"

    def shard(self, index: int, count: int) -> "WindowSource":
        """Shard ``index`` of ``count``: whole files, each given to the shard with fewest rows so far
        (largest first), so shards differ by at most one file's rows."""
        if not 0 <= index < count:
            raise StreamError(f"shard index {index} outside 0..{count - 1}")
        if count == 1:
            return self
        if len(self.fragments) < count:
            raise StreamError(f"{self.describe()}: {len(self.fragments)} file(s) cannot feed {count} workers")
        loads = [0] * count
        mine: list[int] = []
        for j in sorted(range(len(self.rows)), key=lambda j: (-self.rows[j], j)):
            k = min(range(count), key=lambda k: (loads[k], k))
            loads[k] += self.rows[j]
            if k == index:
                mine.append(j)
        mine.sort()
        return WindowSource(self.table, self.version, self.window, tuple(self.fragments[j] for j in mine),
                            tuple(self.rows[j] for j in mine), (index, count))

    def record_batches(self, columns: list[str], *, read_rows: int = READ_BATCH_ROWS,
                       order: list[int] | None = None) -> Iterator[pa.RecordBatch]:
        for j in (range(len(self.fragments)) if order is None else order):
            yield from _batches(self.fragments[j], self.table, self.version, columns, read_rows)

    def column(self, name: str) -> np.ndarray:
        """One column of every row (e.g. the ids a vocabulary is built from), file by file."""
        return _column(self, name)


def _column(source, name: str) -> np.ndarray:
    parts = [np.asarray(b.column(0)) for b in source.record_batches([name])]
    return np.concatenate(parts) if parts else np.zeros(0)


@dataclass(frozen=True)
class TaggedSource:
    """Several :class:`WindowSource` read as one, each row given its part's constant columns
    (``tags``, e.g. Sample merging's ``domain``): natural and ad rows in one stream. The bounded
    shuffle permutes the files of all parts together. One input pipeline (no sharding)."""

    parts: tuple[tuple[WindowSource, tuple[tuple[str, int], ...]], ...]

    @property
    def fragments(self) -> tuple[Any, ...]:
        return tuple(f for s, _ in self.parts for f in s.fragments)

    @property
    def rows(self) -> tuple[int, ...]:
        return tuple(r for s, _ in self.parts for r in s.rows)

    @property
    def num_rows(self) -> int:
        return sum(s.num_rows for s, _ in self.parts)

    def describe(self) -> str:
        return " + ".join(f"{s.describe()} {dict(tags)}" for s, tags in self.parts)

    def column(self, name: str) -> np.ndarray:
        """One column of every part's rows (a tag column: the part's constant), part by part."""
        return _column(self, name)

    def shard(self, index: int, count: int) -> "TaggedSource":
        if count != 1:
            raise StreamError(f"{self.describe()}: a tagged source feeds one input pipeline, not {count}")
        return self

    def record_batches(self, columns: list[str], *, read_rows: int = READ_BATCH_ROWS,
                       order: list[int] | None = None) -> Iterator[pa.RecordBatch]:
        where = [(p, j) for p, (s, _) in enumerate(self.parts) for j in range(len(s.fragments))]
        for k in (range(len(where)) if order is None else order):
            p, j = where[k]
            source, tags = self.parts[p]
            tagged = dict(tags)
            read = [c for c in columns if c not in tagged]
            for rb in _batches(source.fragments[j], source.table, source.version, read, read_rows):
                consts = [pa.array(np.full(rb.num_rows, tagged[c], np.int64)) for c in tagged if c in columns]
                yield pa.RecordBatch.from_arrays(list(rb.columns) + consts,
                                                 names=read + [c for c in tagged if c in columns])


def _batches(fragment, table: str, version: int, columns: list[str], read_rows: int) -> Iterator[pa.RecordBatch]:
    """The record batches of one file; a file that went missing or turned out damaged after the
    source was opened is a one-line error naming it."""
    try:
        yield from fragment.to_batches(columns=columns, batch_size=read_rows, use_threads=False)
    except (OSError, pa.ArrowException) as exc:
        raise delta.data_file_error(None, table, version, fragment.path, exc) from None


def open_source(store: ArtifactStore, data, window: calendar.Window, *, who: str) -> WindowSource:
    """The :class:`WindowSource` of ``window`` of a run's table at its pinned version
    (``data``: a :class:`~.training.DataSpec`); every day of the window must have a file at that
    version (checked from the fragments listed, no second read of the log)."""
    source = WindowSource.open(store, data.table, data.version, window)
    present = {pads.get_partition_keys(f.partition_expression).get(delta.PARTITION_COLUMN) for f in source.fragments}
    missing = [d for d in window.partitions() if d not in present and d not in data.empty_days]
    if missing:
        raise StreamError(f"{who}: {data.table}@v{data.version} has no partition {missing[0]} (window {window}); "
                          "run the extraction first")
    if source.num_rows == 0:
        raise StreamError(f"{who}: {source.describe()} has no rows")
    return source


def _concat(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    if len(parts) == 1:
        return parts[0]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def _take(arrays: dict[str, np.ndarray], idx) -> dict[str, np.ndarray]:
    return {k: v[idx] for k, v in arrays.items()}


def raw_batches(source: WindowSource, layout: FeatureLayout, batch_size: int, *, shuffle: bool, seed: int = 0,
                buffer_rows: int = BUFFER_ROWS, read_rows: int = READ_BATCH_ROWS,
                extra: tuple[str, ...] = ()) -> Iterator[dict[str, np.ndarray]]:
    """Batches of raw columns (plus ``extra`` columns, e.g. ``user_id`` for GAUC) of one pass over
    ``source``; see the module docstring for the bounded shuffle."""
    if batch_size <= 0:
        raise StreamError(f"batch size must be positive, got {batch_size}")
    rng = np.random.default_rng(seed)
    order = list(rng.permutation(len(source.fragments))) if shuffle else None
    columns = list(dict.fromkeys(list(layout.columns) + list(extra)))
    cap = max(buffer_rows, 2 * batch_size) if shuffle else batch_size
    pending: list[dict[str, np.ndarray]] = []
    n_pending = 0

    def convert(rb: pa.RecordBatch) -> dict[str, np.ndarray]:
        table = pa.Table.from_batches([rb])
        out = raw_columns(table, layout)
        for name in extra:
            if name not in out:
                out[name] = np.asarray(table[name])
        return out

    for rb in source.record_batches(columns, read_rows=read_rows, order=order):
        if rb.num_rows == 0:
            continue
        pending.append(convert(rb))
        n_pending += rb.num_rows
        if n_pending < cap:
            continue
        buf = _concat(pending)
        if shuffle:
            buf = _take(buf, rng.permutation(n_pending))
            n_out = (n_pending - cap // 2) // batch_size * batch_size  # keep about half to mix
        else:
            n_out = n_pending // batch_size * batch_size
        for s in range(0, n_out, batch_size):
            yield {k: v[s:s + batch_size] for k, v in buf.items()}
        rest = {k: v[n_out:] for k, v in buf.items()}
        n_pending = n_pending - n_out
        pending = [rest] if n_pending else []
    if n_pending:
        buf = _concat(pending)
        if shuffle:
            buf = _take(buf, rng.permutation(n_pending))
        for s in range(0, n_pending, batch_size):
            yield {k: v[s:s + batch_size] for k, v in buf.items()}


def signature(layout: FeatureLayout, extra: dict[str, Any] | None = None) -> dict:
    import tensorflow as tf

    spec = {n: tf.TensorSpec((None, layout.max_seq_len) if n in layout.sequences else (None,), tf.int64)
            for n in layout.features}
    spec[LABEL] = tf.TensorSpec((None,), tf.float32)
    for name, dtype in (extra or {}).items():
        spec[name] = tf.TensorSpec((None,), dtype)
    return spec


def decoded_bytes(source: WindowSource, layout: FeatureLayout) -> int:
    """Bytes of ``source``'s rows decoded into raw columns (int64/float: 8 bytes a value, a
    sequence ``max_seq_len`` values): what :func:`make_dataset`'s cache would hold."""
    per_row = 8 * (len(layout.columns) + (layout.max_seq_len - 1) * len(layout.sequences))
    return per_row * source.num_rows


def make_dataset(source: WindowSource, layout: FeatureLayout, batch_size: int, *, shuffle: bool, seed: int = 0,
                 buffer_rows: int = BUFFER_ROWS, read_rows: int = READ_BATCH_ROWS, first_epoch: int = 0,
                 repeat: bool = False, cache_bytes: int = 0):
    """``(model inputs, label)`` batches of ``source`` through the shared preprocessing graph.
    Each iteration of the dataset is one pass (epoch ``first_epoch``, then +1 ...) reshuffled with
    ``seed + epoch``; ``repeat`` makes it endless (multi-worker training sets the steps).

    ``cache_bytes``: when the shard's decoded rows fit (:func:`decoded_bytes`), they are read
    once, record batch by record batch, and every pass is a fresh permutation of them in memory
    (:func:`~ecdctr_pipeline.modeling.inputs.epochs_dataset`), so the files are decoded once,
    not once an epoch; larger shards stream. The trainers pass ``training.input_cache_mb``."""
    import itertools

    import tensorflow as tf

    from ecdctr_pipeline.modeling.preprocessing import transform

    options = tf.data.Options()
    # the source is sharded by file above; tf.distribute must not shard it again
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    if cache_bytes and decoded_bytes(source, layout) <= cache_bytes:
        from ecdctr_pipeline.modeling.inputs import epochs_dataset

        arrays = _concat(list(raw_batches(source, layout, read_rows, shuffle=False, read_rows=read_rows)))
        log.debug("%s: %d rows decoded once into memory (%.0f MB)", source.describe(), source.num_rows,
                  decoded_bytes(source, layout) / 2**20)
        ds = epochs_dataset(arrays, layout, batch_size, shuffle=shuffle, seed=seed, first_epoch=first_epoch,
                            repeat=repeat)
        return ds.with_options(options).prefetch(tf.data.AUTOTUNE)
    epochs = itertools.count(first_epoch)

    def generate():
        epoch = next(epochs)
        yield from raw_batches(source, layout, batch_size, shuffle=shuffle, seed=seed + 7919 * epoch,
                               buffer_rows=buffer_rows, read_rows=read_rows)

    ds = tf.data.Dataset.from_generator(generate, output_signature=signature(layout))
    if repeat:
        ds = ds.repeat()
    else:  # a pass has exactly this many batches (rows from the Parquet footers): Keras knows the
        # epoch's length, and a file that yields other rows than its footer says fails the run
        ds = ds.apply(tf.data.experimental.assert_cardinality(-(-source.num_rows // batch_size)))

    def to_model(raw):
        return transform({k: v for k, v in raw.items() if k != LABEL}, layout), raw[LABEL]

    ds = ds.map(to_model, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.with_options(options).prefetch(tf.data.AUTOTUNE)


_score_steps: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def score_stream(model, source: WindowSource, layout: FeatureLayout, *, batch_size: int = 8192,
                 read_rows: int = READ_BATCH_ROWS) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(labels, scores, user ids)`` of every row of ``source``, in file order, predicted batch by
    batch through the shared preprocessing graph."""
    import tensorflow as tf

    from ecdctr_pipeline.modeling.preprocessing import transform

    step = _score_steps.get(model)
    if step is None:  # one traced function per model (a new one per call would retrace every time)
        @tf.function(reduce_retracing=True)
        def step(raw):
            return tf.reshape(model(transform(raw, layout), training=False), (-1,))

        _score_steps[model] = step

    labels, scores, users = [], [], []
    for raw in raw_batches(source, layout, batch_size, shuffle=False, read_rows=read_rows):
        y = raw.pop(LABEL)
        scores.append(step({k: tf.constant(v) for k, v in raw.items()}).numpy())
        labels.append(y)
        users.append(raw["user_id"])
    return np.concatenate(labels), np.concatenate(scores).astype(np.float64), np.concatenate(users)
