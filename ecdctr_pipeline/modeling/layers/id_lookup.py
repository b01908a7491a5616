"""Id → row lookups that live in the graph (so a SavedModel takes raw ids).

* :class:`ModuloHash` buckets arbitrary int64 ids into ``[0, num_buckets)`` (``id mod n``).
* :class:`FrozenIdLookup` maps a fixed, sorted id vocabulary to rows ``1..n`` by binary
  search, and every other id to row 0 (the defined "unknown" row). Its vocabulary is a
  non-trainable int64 weight, so it saves and loads with the model.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf


@keras.saving.register_keras_serializable(package="ecdctr")
class ModuloHash(keras.layers.Layer):
    def __init__(self, num_buckets: int, **kwargs):
        super().__init__(**kwargs)
        if int(num_buckets) <= 0:
            raise ValueError(f"num_buckets must be a positive integer. Received: num_buckets={num_buckets}")
        self.num_buckets = int(num_buckets)

    def call(self, ids):
        return tf.math.floormod(tf.cast(ids, "int64"), self.num_buckets)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "num_buckets": self.num_buckets}


@keras.saving.register_keras_serializable(package="ecdctr")
class FrozenIdLookup(keras.layers.Layer):
    """Row of each id in a sorted vocabulary of ``vocab_size`` ids: 1..vocab_size, unknown → 0."""

    def __init__(self, vocab_size: int, **kwargs):
        super().__init__(**kwargs)
        if int(vocab_size) <= 0:
            raise ValueError(f"vocab_size must be a positive integer. Received: vocab_size={vocab_size}")
        self.vocab_size = int(vocab_size)

    def build(self, input_shape=None):
        # created in build() so its path carries the enclosing layer's name (e.g. hist_user/lookup/keys)
        self.keys = self.add_weight(name="keys", shape=(self.vocab_size,), dtype="int64",
                                    initializer="zeros", trainable=False)

    def set_vocabulary(self, ids: np.ndarray) -> None:
        if not self.built:
            self.build()
        ids = np.asarray(ids, dtype=np.int64)
        if ids.shape != (self.vocab_size,):
            raise ValueError(f"vocabulary must have shape ({self.vocab_size},). Received: shape={ids.shape}")
        if np.any(np.diff(ids) <= 0):
            raise ValueError("vocabulary ids must be sorted and unique")
        self.keys.assign(ids)

    def call(self, ids):
        ids = tf.cast(ids, "int64")
        flat = tf.reshape(ids, [-1])
        keys = tf.convert_to_tensor(self.keys)
        pos = tf.searchsorted(keys, flat, side="left", out_type=tf.int64)
        safe = tf.minimum(pos, self.vocab_size - 1)
        found = tf.logical_and(pos < self.vocab_size, tf.gather(keys, safe) == flat)
        rows = tf.where(found, safe + 1, tf.zeros_like(safe))
        return tf.reshape(rows, tf.shape(ids))

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "vocab_size": self.vocab_size}
