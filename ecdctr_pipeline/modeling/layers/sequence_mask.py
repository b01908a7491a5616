"""``(B, 1)`` sequence lengths → ``(B, max_len)`` float mask (1 for real steps, 0 for padding)."""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="ecdctr")
class SequenceMask(keras.layers.Layer):
    def __init__(self, max_len: int, **kwargs):
        super().__init__(**kwargs)
        if int(max_len) <= 0:
            raise ValueError(f"max_len must be a positive integer. Received: max_len={max_len}")
        self.max_len = int(max_len)

    def call(self, lengths):
        lengths = ops.reshape(ops.cast(lengths, "int32"), (-1, 1))
        return ops.cast(ops.arange(self.max_len, dtype="int32")[None, :] < lengths, "float32")

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.max_len)

    def get_config(self):
        return {**super().get_config(), "max_len": self.max_len}
