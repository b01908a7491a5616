"""The one preprocessing path from feature rows to model inputs, shared by training, evaluation
and the serving signature.

Two stages, each written once:

1. :func:`raw_columns` — Arrow feature table → *raw* NumPy columns, the form a serving client
   sends: int64 ids, categories with ``-1`` for missing, raw int64 counters, behaviour
   sequences padded/clipped to ``max_seq_len`` (the most recent kept, left-aligned, 0-padded)
   and the raw ``hist_len``. Training keeps these columns in memory; ``ecdctr score`` and the
   export's warm-up requests send them to TF Serving.
2. :func:`transform` — raw tensors → Keras model inputs, in TensorFlow ops: missing and
   out-of-vocabulary categories → the extra "missing" bucket, ``log1p`` of counters,
   ``hist_len`` clipped to ``max_seq_len``, one column per scalar input. The tf.data input
   pipeline maps it over every batch and the exported SavedModel runs it inside
   ``serving_default``, so the two cannot diverge (``tests/unit/models/test_serving.py``
   checks that the same rows, nulls and out-of-range ids included, score the same).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ecdctr_pipeline.core.schema import (
    ID_COLUMNS, SEQ_CATS, SEQ_ITEMS, SEQ_LEN, SRC_SEQ_CATS, SRC_SEQ_ITEMS, SRC_SEQ_LEN, FeatureSchema, counter_names,
)

LABEL = "click"
ID_FEATURES = ID_COLUMNS
MISSING = -1  # a missing category in the raw form
# Sample merging's domain indicator (natural 0, ad 1): a model input only of the layouts that ask
# for it (``FeatureLayout.domain_indicator``), given by the source, not stored in the tables
DOMAIN = "domain"
DOMAIN_CODES = {"natural": 0, "ad": 1}


@dataclass(frozen=True)
class FeatureLayout:
    """Which model inputs a table feeds. ``tpm``: basic features only; ``complete``: all. The
    categorical inputs are the feature schema's profile (and, complete, context) columns."""

    kind: str  # "tpm" | "complete"
    schema: FeatureSchema
    max_seq_len: int = 50
    counter_windows_days: tuple[int, ...] = (7, 28)
    domain_indicator: bool = False  # complete only: the ``domain`` input (Sample merging)
    # complete only: the ad rows' natural clicks as a second sequence (``src_hist_*``, MiNet)
    source_sequence: bool = False

    @classmethod
    def tpm(cls, features) -> "FeatureLayout":
        """The tiny model's layout under ``features`` (:class:`FeatureSettings`)."""
        return cls("tpm", features.feature_schema())

    @classmethod
    def complete(cls, features, *, domain_indicator: bool = False, source_sequence: bool = False) -> "FeatureLayout":
        """The complete model's layout under ``features`` (:class:`FeatureSettings`)."""
        return cls("complete", features.feature_schema(), features.max_seq_len, tuple(features.counter_windows_days),
                   domain_indicator, source_sequence)

    @property
    def categorical(self) -> tuple[str, ...]:
        if self.kind == "tpm":
            return tuple(c.name for c in self.schema.user_profile + self.schema.item_profile)
        return self.schema.categorical + ((DOMAIN,) if self.domain_indicator else ())

    def vocab(self, name: str) -> int | None:
        """A categorical input's vocabulary size (ids ``0 .. n-1``); ``None``: hashed."""
        return len(DOMAIN_CODES) if name == DOMAIN else self.schema.column(name).vocab_size

    @property
    def dense(self) -> tuple[str, ...]:
        return counter_names(self.counter_windows_days) if self.kind == "complete" else ()

    @property
    def sequences(self) -> tuple[str, ...]:
        if self.kind != "complete":
            return ()
        return (SEQ_ITEMS, SEQ_CATS) + ((SRC_SEQ_ITEMS, SRC_SEQ_CATS) if self.source_sequence else ())

    @property
    def lengths(self) -> tuple[str, ...]:
        """The sequences' length inputs."""
        if self.kind != "complete":
            return ()
        return (SEQ_LEN,) + ((SRC_SEQ_LEN,) if self.source_sequence else ())

    @property
    def features(self) -> tuple[str, ...]:
        """The raw feature columns (model and serving inputs), without the label."""
        return ID_FEATURES + self.categorical + self.dense + self.sequences + self.lengths

    @property
    def columns(self) -> tuple[str, ...]:
        return self.features + (LABEL,)

    def input_spec(self) -> dict[str, tuple[str, tuple]]:
        """name → (dtype, shape) of the raw inputs (the serving signature)."""
        return {n: ("int64", (None, self.max_seq_len) if n in self.sequences else (None,)) for n in self.features}


def pad_sequences(col: pa.ChunkedArray | pa.Array, max_len: int) -> np.ndarray:
    """A list column as ``(rows, max_len)`` int64, left-aligned, zero-padded (the last ``max_len`` kept)."""
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    offsets = np.asarray(arr.offsets)
    values = np.asarray(arr.flatten().fill_null(0)).astype(np.int64)
    lengths = np.diff(offsets)
    n = len(lengths)
    out = np.zeros((n, max_len), dtype=np.int64)
    keep = np.minimum(lengths, max_len)
    rows = np.repeat(np.arange(n), keep)
    starts = offsets[1:] - keep  # keep the most recent max_len
    src = np.repeat(starts, keep) + (np.arange(keep.sum()) - np.repeat(np.cumsum(keep) - keep, keep))
    cols = np.arange(keep.sum()) - np.repeat(np.cumsum(keep) - keep, keep)
    out[rows, cols] = values[src - offsets[0]]
    return out


def raw_columns(table: pa.Table, layout: FeatureLayout, *, label: bool = True) -> dict[str, np.ndarray]:
    """The raw columns of ``table`` (features, and ``click`` when ``label``) as NumPy arrays."""
    wanted = layout.columns if label else layout.features
    missing = [c for c in wanted if c not in table.column_names]
    if missing:
        raise ValueError(f"feature table lacks column(s) {', '.join(missing)}")
    out: dict[str, np.ndarray] = {}
    for name in layout.features:
        col = table[name]
        if name in layout.sequences:
            out[name] = pad_sequences(col, layout.max_seq_len)
        elif name in layout.categorical:
            out[name] = np.asarray(pc.fill_null(col, MISSING)).astype(np.int64)
        elif col.null_count:
            raise ValueError(f"feature column {name} has {col.null_count} null value(s)")
        else:
            out[name] = np.asarray(col).astype(np.int64)
    if label:
        out[LABEL] = np.asarray(table[LABEL]).astype(np.float32)
    return out


def transform(raw: dict, layout: FeatureLayout) -> dict:
    """Raw feature tensors (``[B]`` scalars, ``[B, N]`` sequences) → Keras model inputs (TF ops)."""
    import tensorflow as tf

    out = {}
    for n in ID_FEATURES:
        out[n] = tf.reshape(tf.cast(raw[n], tf.int64), (-1, 1))
    for n in layout.categorical:
        x = tf.reshape(tf.cast(raw[n], tf.int64), (-1, 1))
        vs = layout.vocab(n)
        if vs is not None:  # missing or out of vocabulary -> the extra "missing" bucket
            x = tf.where((x < 0) | (x >= vs), tf.constant(vs, tf.int64), x)
        out[n] = x  # hashed columns (brand) are bucketed by the model's ModuloHash, -1 included
    for n in layout.dense:
        out[n] = tf.reshape(tf.math.log1p(tf.cast(tf.maximum(raw[n], 0), tf.float32)), (-1, 1))
    for n in layout.sequences:
        out[n] = tf.cast(raw[n], tf.int64)
    for n in layout.lengths:
        out[n] = tf.reshape(tf.clip_by_value(tf.cast(raw[n], tf.int64), 0, layout.max_seq_len), (-1, 1))
    return out
