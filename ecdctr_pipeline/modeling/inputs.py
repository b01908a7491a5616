"""tf.data over raw columns already in memory: the export's parity check (a day's holdout
through the training graph vs the SavedModel) and the benchmarks' in-memory reference. The
trainers and the holdout evaluation stream instead (:mod:`ecdctr_pipeline.modeling.streaming`).

Each batch is gathered by index in parallel ``map`` calls, run through the shared preprocessing
graph (:func:`~ecdctr_pipeline.modeling.preprocessing.transform`, the same one the serving
signature runs) and prefetched. No Python runs per row.
"""

from __future__ import annotations

import numpy as np

from ecdctr_pipeline.modeling.preprocessing import LABEL, FeatureLayout, transform


def make_dataset(arrays: dict[str, np.ndarray], layout: FeatureLayout, batch_size: int, *, shuffle: bool,
                 seed: int = 0, drop_remainder: bool = False):
    """A ``tf.data.Dataset`` of ``(model inputs, label)`` batches from raw in-memory columns."""
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
        raw = {k: tf.gather(t, idx) for k, t in tensors.items() if k != LABEL}
        return transform(raw, layout), tf.gather(tensors[LABEL], idx)

    ds = tf.data.Dataset.range(n_batches)
    if shuffle:
        ds = ds.shuffle(n_batches, seed=seed, reshuffle_each_iteration=True)
    return ds.map(gather, num_parallel_calls=tf.data.AUTOTUNE, deterministic=not shuffle).prefetch(tf.data.AUTOTUNE)


def epochs_dataset(arrays: dict[str, np.ndarray], layout: FeatureLayout, batch_size: int, *, shuffle: bool,
                   seed: int = 0, first_epoch: int = 0, repeat: bool = False):
    """Passes over raw in-memory columns, each a fresh permutation of the rows (the streaming
    trainers' cache, :func:`~ecdctr_pipeline.modeling.streaming.make_dataset`): each iteration of
    the dataset is one pass (epoch ``first_epoch``, then +1 ...), its rows permuted by the
    stateless seed ``(seed, epoch)`` — so epoch ``e`` is the same whether a run started at 0 or
    resumed at ``e``; ``repeat`` makes it endless (one epoch after the other). No Python runs per
    batch."""
    import itertools

    import tensorflow as tf

    n = len(arrays[LABEL])
    if n == 0:
        raise ValueError("no rows to train or evaluate on")
    tensors = {k: tf.constant(v) for k, v in arrays.items()}
    n_batches = -(-n // batch_size)
    epochs = itertools.count(first_epoch)

    def next_epochs():
        yield from (epochs if repeat else [next(epochs)])

    def one_pass(epoch):
        rows = tf.range(n, dtype=tf.int64)
        if shuffle:
            rows = tf.random.experimental.stateless_shuffle(rows, seed=tf.stack([tf.constant(seed, tf.int64), epoch]))

        def gather(b):
            idx = rows[b * batch_size: tf.minimum((b + 1) * batch_size, n)]
            raw = {k: tf.gather(t, idx) for k, t in tensors.items() if k != LABEL}
            return transform(raw, layout), tf.gather(tensors[LABEL], idx)

        return tf.data.Dataset.range(n_batches).map(gather, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)

    ds = tf.data.Dataset.from_generator(next_epochs, output_signature=tf.TensorSpec((), tf.int64)).flat_map(one_pass)
    if not repeat:  # Keras knows the epoch's length
        ds = ds.apply(tf.data.experimental.assert_cardinality(n_batches))
    return ds
