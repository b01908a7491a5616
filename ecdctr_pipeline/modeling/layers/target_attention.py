"""DIN-style target attention over a behaviour sequence, masked for padding.

For a query ``q`` (the candidate item, ``(B, E)``) and keys ``k_t`` (the user's past
clicks, ``(B, T, E)``) the weight of step ``t`` is ``MLP([q, k_t, q - k_t, q * k_t])``
(a scalar, no softmax, as in DIN), padded steps get weight 0, and the output is
``sum_t w_t k_t`` (``(B, E)``).
"""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="ecdctr")
class TargetAttention(keras.layers.Layer):
    def __init__(self, hidden_units: list[int] | tuple[int, ...] = (36,), activation: str = "sigmoid", **kwargs):
        super().__init__(**kwargs)
        units = list(hidden_units)
        if not units or any(int(u) <= 0 for u in units):
            raise ValueError(f"hidden_units must be a non-empty list of positive ints. Received: hidden_units={hidden_units}")
        self.hidden_units = [int(u) for u in units]
        self.activation = activation
        self.hidden = [keras.layers.Dense(u, activation=activation, name=f"att_dense_{i}")
                       for i, u in enumerate(self.hidden_units)]
        self.score = keras.layers.Dense(1, name="att_score")

    def build(self, input_shape):
        q_shape, k_shape, _mask_shape = input_shape
        e = k_shape[-1]
        if q_shape[-1] != e:
            raise ValueError(f"query and keys must share the last dimension. Received: {q_shape} and {k_shape}")
        d = 4 * e
        for layer in self.hidden:
            layer.build((None, None, d))
            d = layer.units
        self.score.build((None, None, d))

    def call(self, inputs):
        query, keys, mask = inputs  # (B,E), (B,T,E), (B,T) bool/0-1
        t = ops.shape(keys)[1]
        q = ops.repeat(ops.expand_dims(query, 1), t, axis=1)
        x = ops.concatenate([q, keys, q - keys, q * keys], axis=-1)
        for layer in self.hidden:
            x = layer(x)
        w = ops.squeeze(self.score(x), -1) * ops.cast(mask, keys.dtype)  # (B,T)
        return ops.sum(ops.expand_dims(w, -1) * keys, axis=1)

    def compute_output_shape(self, input_shape):
        return (input_shape[1][0], input_shape[1][-1])

    def get_config(self):
        return {**super().get_config(), "hidden_units": self.hidden_units, "activation": self.activation}
