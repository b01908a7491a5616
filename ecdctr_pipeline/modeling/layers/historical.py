"""The historical-embedding block of E-CDCTR (paper eq. 2–3) and its merged serving form.

:class:`HistoricalEmbedding` holds, frozen, the ``M`` monthly TPM vectors of every id of an
embedding set (``table``: ``(vocab+1, M, d)``; row 0 is the *unknown* row, all zeros, also
used for a month in which a known id has no vector). For a batch of ids it looks the rows up
(:class:`FrozenIdLookup`), runs self-attention over the ``M`` tokens and mean-pools them to
one ``d``-vector. Only the attention (and the optional month positions) is trained.

``mask_unseen``: a month in which the id has no vector (it was not yet seen; its token is all
zeros) is neither attended to nor pooled, so an id seen only in the last month is its last
month's vector through the attention, not diluted by two zero tokens. Without it (the layer's
default, which models saved before the option load with) zero tokens take part like any other.
An id the set does not know at all gets a defined vector either way: the attention's output on
``M`` zero tokens. ``month_positions``: a learned vector per month position added to the
present tokens (an ablation: which month a vector is from, not only what it is).

Because that output depends on the id alone, after training it can be folded into one
table (:meth:`HistoricalEmbedding.merged_table`), which :class:`MergedHistoricalEmbedding`
serves with a single lookup (paper §3.6.2).
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from ecdctr_pipeline.modeling.layers.id_lookup import FrozenIdLookup


@keras.saving.register_keras_serializable(package="ecdctr")
class HistoricalEmbedding(keras.layers.Layer):
    def __init__(self, vocab_size: int, dim: int, months: int = 3, num_heads: int = 1, mask_unseen: bool = False,
                 month_positions: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.mask_unseen, self.month_positions = bool(mask_unseen), bool(month_positions)
        for name, v in (("vocab_size", vocab_size), ("dim", dim), ("months", months), ("num_heads", num_heads)):
            if int(v) <= 0:
                raise ValueError(f"{name} must be a positive integer. Received: {name}={v}")
        self.vocab_size, self.dim, self.months, self.num_heads = int(vocab_size), int(dim), int(months), int(num_heads)
        self.lookup = FrozenIdLookup(self.vocab_size, name="lookup")
        self.attention = keras.layers.MultiHeadAttention(num_heads=self.num_heads, key_dim=self.dim,
                                                         name="self_attention")

    def set_tables(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Load the frozen TPM vectors: ``ids`` sorted ``(n,)``, ``vectors`` ``(n, months, dim)``."""
        if not self.built:
            self.build((None, 1))
        vectors = np.asarray(vectors, dtype="float32")
        if vectors.shape != (self.vocab_size, self.months, self.dim):
            raise ValueError(f"vectors must have shape {(self.vocab_size, self.months, self.dim)}. "
                             f"Received: shape={vectors.shape}")
        self.lookup.set_vocabulary(ids)
        self.table.assign(np.concatenate([np.zeros((1, self.months, self.dim), "float32"), vectors]))

    def build(self, input_shape):
        self.table = self.add_weight(name="table", shape=(self.vocab_size + 1, self.months, self.dim),
                                     initializer="zeros", trainable=False)
        self.lookup.build(input_shape)
        if self.month_positions:
            self.positions = self.add_weight(name="month_positions", shape=(self.months, self.dim),
                                             initializer="zeros", trainable=True)
        self.attention.build((None, self.months, self.dim), (None, self.months, self.dim))

    def pooled(self, tokens):
        """``mean(SA(tokens))`` over the present months (all months unless ``mask_unseen``) for
        tokens ``(B, months, dim)``."""
        present = ops.any(ops.not_equal(tokens, 0.0), axis=-1)  # (B, M)
        if self.month_positions:
            tokens = tokens + ops.cast(present, tokens.dtype)[:, :, None] * self.positions[None]
        if not self.mask_unseen:
            return ops.mean(self.attention(tokens, tokens), axis=1)
        # an id with no month at all keeps every (zero) token: the unknown id's defined vector
        present = ops.logical_or(present, ops.logical_not(ops.any(present, axis=1, keepdims=True)))
        out = self.attention(tokens, tokens, attention_mask=ops.repeat(present[:, None, :], self.months, axis=1))
        weight = ops.cast(present, out.dtype)[:, :, None]
        return ops.sum(out * weight, axis=1) / ops.sum(weight, axis=1)

    def call(self, ids):
        rows = self.lookup(ids)
        tokens = ops.take(self.table, ops.reshape(rows, (-1,)), axis=0)  # (B, M, d)
        return self.pooled(tokens)

    def merged_table(self, batch_size: int = 65536) -> tuple[np.ndarray, np.ndarray]:
        """(sorted ids, ``(vocab+1, dim)`` merged vectors with row 0 = unknown), in batches."""
        table = self.table
        out = np.empty((self.vocab_size + 1, self.dim), dtype="float32")
        for s in range(0, self.vocab_size + 1, batch_size):
            rows = ops.arange(s, min(s + batch_size, self.vocab_size + 1))
            out[s:s + batch_size] = ops.convert_to_numpy(self.pooled(ops.take(table, rows, axis=0)))
        return ops.convert_to_numpy(self.lookup.keys), out

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.dim)

    def get_config(self):
        return {**super().get_config(), "vocab_size": self.vocab_size, "dim": self.dim, "months": self.months,
                "num_heads": self.num_heads, "mask_unseen": self.mask_unseen, "month_positions": self.month_positions}


@keras.saving.register_keras_serializable(package="ecdctr")
class MergedHistoricalEmbedding(keras.layers.Layer):
    """One lookup into a merged table ``(vocab+1, dim)``; unknown ids → row 0."""

    def __init__(self, vocab_size: int, dim: int, **kwargs):
        super().__init__(**kwargs)
        for name, v in (("vocab_size", vocab_size), ("dim", dim)):
            if int(v) <= 0:
                raise ValueError(f"{name} must be a positive integer. Received: {name}={v}")
        self.vocab_size, self.dim = int(vocab_size), int(dim)
        self.lookup = FrozenIdLookup(self.vocab_size, name="lookup")

    def build(self, input_shape):
        self.table = self.add_weight(name="table", shape=(self.vocab_size + 1, self.dim), initializer="zeros",
                                     trainable=False)
        self.lookup.build(input_shape)

    def set_table(self, ids: np.ndarray, merged: np.ndarray) -> None:
        if not self.built:
            self.build((None, 1))
        merged = np.asarray(merged, dtype="float32")
        if merged.shape != (self.vocab_size + 1, self.dim):
            raise ValueError(f"merged must have shape {(self.vocab_size + 1, self.dim)}. Received: shape={merged.shape}")
        self.lookup.set_vocabulary(ids)
        self.table.assign(merged)

    def call(self, ids):
        return ops.take(self.table, ops.reshape(self.lookup(ids), (-1,)), axis=0)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.dim)

    def get_config(self):
        return {**super().get_config(), "vocab_size": self.vocab_size, "dim": self.dim}
