"""DCN-v2 cross network: ``x_{l+1} = x_0 * (W_l x_l + b_l) + x_l`` for ``num_layers`` layers."""

from __future__ import annotations

import keras


@keras.saving.register_keras_serializable(package="ecdctr")
class CrossNetwork(keras.layers.Layer):
    def __init__(self, num_layers: int = 2, **kwargs):
        super().__init__(**kwargs)
        if int(num_layers) < 1:
            raise ValueError(f"num_layers must be >= 1. Received: num_layers={num_layers}")
        self.num_layers = int(num_layers)
        self.dense: list[keras.layers.Dense] = []  # sized in build(), once the input width is known

    def build(self, input_shape):
        d = input_shape[-1]
        if d is None:
            raise ValueError(f"the last input dimension must be known. Received: input_shape={input_shape}")
        self.dense = [keras.layers.Dense(d, name=f"cross_{i}") for i in range(self.num_layers)]
        for layer in self.dense:
            layer.build((None, d))

    def call(self, x0):
        x = x0
        for layer in self.dense:
            x = x0 * layer(x) + x
        return x

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "num_layers": self.num_layers}
