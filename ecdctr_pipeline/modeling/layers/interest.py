"""MiNet's interest-level attention (Ouyang et al., CIKM 2020), a baseline of the paper's Table 2.

MiNet scores a target-domain row from three interests of the user: the long-term one (the user's
embedding, shared by both domains), the short-term source-domain one (attention over the user's
recent source clicks) and the short-term target-domain one (attention over recent target
clicks). The interest-level attention weighs each interest by a gate computed from the candidate
and all three interests, with an *exponential* activation instead of a softmax, so that the
interests' weights are not forced to sum to one (one domain's interest can matter more for some
candidates without taking weight from the others).
"""

from __future__ import annotations

import keras
from keras import ops

# the exponent is clipped to ``±EXP_CLIP`` (a gate weight lies in [e^-15, e^15]): an unbounded
# exponential overflows to inf on a diverging step and turns every later loss into NaN
EXP_CLIP = 15.0


@keras.saving.register_keras_serializable(package="ecdctr")
class InterestAttention(keras.layers.Layer):
    """``[query (batch, q), interest_1 (batch, d_1), …, interest_k (batch, d_k)]`` →
    ``(batch, d_1 + … + d_k)``: each interest scaled by its own gate
    ``a_i = exp(v_i · ReLU(W_i [query; interest_1; …; interest_k] + b_i) + c_i)``."""

    def __init__(self, hidden_units: int = 16, **kwargs):
        super().__init__(**kwargs)
        if int(hidden_units) <= 0:
            raise ValueError(f"hidden_units must be a positive int. Received: hidden_units={hidden_units}")
        self.hidden_units = int(hidden_units)

    def build(self, input_shape):
        if len(input_shape) < 2:
            raise ValueError(f"expects [query, interest, ...]. Received {len(input_shape)} input(s)")
        d = sum(int(s[-1]) for s in input_shape)
        k = len(input_shape) - 1
        self.hidden = [keras.layers.Dense(self.hidden_units, activation="relu", name=f"gate_{i}_hidden")
                       for i in range(k)]
        self.logit = [keras.layers.Dense(1, name=f"gate_{i}_logit") for i in range(k)]
        for h, o in zip(self.hidden, self.logit):
            h.build((None, d))
            o.build((None, self.hidden_units))

    def gates(self, inputs):
        """``(batch, k)``: each row's weight of each interest."""
        joint = ops.concatenate(list(inputs), axis=-1)
        logits = [o(h(joint)) for h, o in zip(self.hidden, self.logit)]
        return ops.exp(ops.clip(ops.concatenate(logits, axis=-1), -EXP_CLIP, EXP_CLIP))

    def call(self, inputs):
        a = self.gates(inputs)
        return ops.concatenate([a[:, i:i + 1] * x for i, x in enumerate(inputs[1:])], axis=-1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0][0], sum(int(s[-1]) for s in input_shape[1:]))

    def get_config(self):
        return {**super().get_config(), "hidden_units": self.hidden_units}
