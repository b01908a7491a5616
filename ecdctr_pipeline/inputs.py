"""Input pipeline shared by every trainer: Delta snapshot → Arrow → NumPy columns → tf.data.

Columns are converted once, vectorised (sequences are padded with one scatter, nulls in
categorical columns become an extra "missing" bucket); batches are gathered from in-memory
tensors by index in parallel ``map`` calls and prefetched. No Python runs per row.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .schema import CONTEXT, ITEM_PROFILE, SEQ_CATS, SEQ_ITEMS, SEQ_LEN, USER_PROFILE, counter_names

LABEL = "click"
ID_FEATURES = ("user_id", "item_id", "category_id")
CATEGORICAL = tuple(c.name for c in USER_PROFILE + ITEM_PROFILE + CONTEXT)


@dataclass(frozen=True)
class FeatureLayout:
    """Which model inputs a table feeds. ``tpm``: basic features only; ``complete``: all."""

    kind: str  # "tpm" | "complete"
    max_seq_len: int = 50
    counter_windows_days: tuple[int, ...] = (7, 28)

    @property
    def categorical(self) -> tuple[str, ...]:
        if self.kind == "tpm":
            return tuple(c.name for c in USER_PROFILE + ITEM_PROFILE)
        return CATEGORICAL

    @property
    def dense(self) -> tuple[str, ...]:
        return counter_names(self.counter_windows_days) if self.kind == "complete" else ()

    @property
    def sequences(self) -> tuple[str, ...]:
        return (SEQ_ITEMS, SEQ_CATS) if self.kind == "complete" else ()

    @property
    def columns(self) -> tuple[str, ...]:
        extra = (SEQ_LEN,) if self.kind == "complete" else ()
        return ID_FEATURES + self.categorical + self.dense + self.sequences + extra + (LABEL,)


def _vocab_size(name: str) -> int | None:
    from .schema import RAW_COLUMNS

    return {c.name: c.vocab_size for c in RAW_COLUMNS}[name]


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


def to_arrays(table: pa.Table, layout: FeatureLayout) -> dict[str, np.ndarray]:
    """Model-ready NumPy columns (features + ``click``) from an Arrow table."""
    missing = [c for c in layout.columns if c not in table.column_names]
    if missing:
        raise ValueError(f"feature table lacks column(s) {', '.join(missing)}")
    out: dict[str, np.ndarray] = {}
    for name in ID_FEATURES:
        out[name] = np.asarray(table[name]).astype(np.int64)
    for name in layout.categorical:
        vs = _vocab_size(name)
        col = table[name]
        fill = vs if vs is not None else -1  # an extra bucket for missing values
        out[name] = np.asarray(pc.fill_null(col, fill)).astype(np.int64)
    for name in layout.dense:
        out[name] = np.log1p(np.asarray(table[name]).astype(np.float32))
    for name in layout.sequences:
        out[name] = pad_sequences(table[name], layout.max_seq_len)
    if layout.kind == "complete":
        out[SEQ_LEN] = np.minimum(np.asarray(table[SEQ_LEN]).astype(np.int64), layout.max_seq_len)
    out[LABEL] = np.asarray(table[LABEL]).astype(np.float32)
    return out


def make_dataset(arrays: dict[str, np.ndarray], batch_size: int, *, shuffle: bool, seed: int = 0,
                 drop_remainder: bool = False):
    """A ``tf.data.Dataset`` of ``(features, label)`` batches gathered from in-memory tensors."""
    import tensorflow as tf

    n = len(arrays[LABEL])
    if n == 0:
        raise ValueError("no rows to train or evaluate on")
    tensors = {k: tf.constant(v) for k, v in arrays.items()}
    n_batches = n // batch_size if drop_remainder else -(-n // batch_size)
    if shuffle:
        perm = tf.constant(np.random.default_rng(seed).permutation(n), dtype=tf.int64)
    else:
        perm = tf.range(n, dtype=tf.int64)

    def gather(b):
        idx = perm[b * batch_size: tf.minimum((b + 1) * batch_size, n)]
        feats = {k: tf.gather(t, idx) for k, t in tensors.items() if k != LABEL}
        return feats, tf.gather(tensors[LABEL], idx)

    ds = tf.data.Dataset.range(n_batches)
    if shuffle:
        ds = ds.shuffle(n_batches, seed=seed, reshuffle_each_iteration=True)
    return ds.map(gather, num_parallel_calls=tf.data.AUTOTUNE, deterministic=not shuffle).prefetch(tf.data.AUTOTUNE)
