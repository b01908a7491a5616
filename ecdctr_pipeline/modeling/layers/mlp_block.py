"""MLP block: ``Dense → BatchNorm → activation → Dropout`` per hidden layer.

BatchNorm and Dropout follow the ``training`` flag. BatchNorm layers are named
``bn_<i>`` so transfer policies can tell them apart (A-CTR re-initialises them).
"""

from __future__ import annotations

import keras


@keras.saving.register_keras_serializable(package="ecdctr")
class MLPBlock(keras.layers.Layer):
    def __init__(self, hidden_units: list[int] | tuple[int, ...] = (200, 80), activation: str = "relu",
                 dropout: float = 0.0, batch_norm: bool = True, **kwargs):
        super().__init__(**kwargs)
        units = list(hidden_units)
        if not units or any(int(u) <= 0 for u in units):
            raise ValueError(f"hidden_units must be a non-empty list of positive ints. Received: hidden_units={hidden_units}")
        if not 0.0 <= float(dropout) < 1.0:
            raise ValueError(f"dropout must be in [0, 1). Received: dropout={dropout}")
        self.hidden_units = [int(u) for u in units]
        self.activation = activation
        self.dropout = float(dropout)
        self.batch_norm = bool(batch_norm)
        self.dense = [keras.layers.Dense(u, name=f"dense_{i}") for i, u in enumerate(self.hidden_units)]
        self.bn = [keras.layers.BatchNormalization(name=f"bn_{i}") for i in range(len(units))] if batch_norm else []
        self.act = keras.layers.Activation(activation, name="act")
        self.drop = keras.layers.Dropout(self.dropout, name="dropout")

    def build(self, input_shape):
        d = input_shape[-1]
        for i, layer in enumerate(self.dense):
            layer.build((None, d))
            d = layer.units
            if self.bn:
                self.bn[i].build((None, d))

    def call(self, x, training=None):
        for i, layer in enumerate(self.dense):
            x = layer(x)
            if self.bn:
                x = self.bn[i](x, training=training)
            x = self.act(x)
            if self.dropout:
                x = self.drop(x, training=training)
        return x

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.hidden_units[-1])

    def get_config(self):
        return {**super().get_config(), "hidden_units": self.hidden_units, "activation": self.activation,
                "dropout": self.dropout, "batch_norm": self.batch_norm}
