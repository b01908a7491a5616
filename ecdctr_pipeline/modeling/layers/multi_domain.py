"""Layers of the multi-domain baselines (the paper's Table 2): models trained on natural and ad
rows together that route each row through its domain's parameters.

* :class:`DomainSelect` — each row's output from its domain's tower;
* :class:`ExpertMixture` — MMoE: per-domain softmax gates over shared experts;
* :class:`StarDense` — STAR's star-topology layer: weights ``W ⊙ W_d``, bias ``b + b_d``;
* :class:`PartitionedNorm` — STAR's partitioned normalisation: batch statistics and moving
  averages per domain, scale ``γ·γ_d`` and shift ``β + β_d``.

Each takes the ``domain`` input (int, ``(batch, 1)``, codes ``0 .. domains-1``) as its last input.
"""

from __future__ import annotations

import keras
from keras import ops


def _one_hot(domain, domains: int):
    """``(batch, domains)`` float one-hot of the ``(batch, 1)`` int domain codes."""
    return ops.one_hot(ops.reshape(ops.cast(domain, "int32"), (-1,)), domains)


def _own(per_domain, domain, domains: int):
    """``per_domain`` ``(batch, domains, ...)`` → ``(batch, ...)``: each row's own domain's slice."""
    onehot = _one_hot(domain, domains)
    for _ in range(len(per_domain.shape) - 2):
        onehot = ops.expand_dims(onehot, -1)
    return ops.sum(per_domain * onehot, axis=1)


@keras.saving.register_keras_serializable(package="ecdctr")
class DomainSelect(keras.layers.Layer):
    """``[per_domain (batch, domains), domain (batch, 1)]`` → ``(batch, 1)``: the row's own domain's column."""

    def __init__(self, domains: int, **kwargs):
        super().__init__(**kwargs)
        self.domains = int(domains)

    def call(self, inputs):
        per_domain, domain = inputs
        return ops.expand_dims(_own(per_domain, domain, self.domains), -1)

    def compute_output_shape(self, input_shapes):
        return (input_shapes[0][0], 1)

    def get_config(self):
        return {**super().get_config(), "domains": self.domains}


@keras.saving.register_keras_serializable(package="ecdctr")
class ExpertMixture(keras.layers.Layer):
    """``[experts (batch, k, units), x (batch, d), domain (batch, 1)]`` → ``(batch, units)``: the
    experts weighted by the row's domain's gate (a softmax over the k experts computed from ``x``)."""

    def __init__(self, domains: int, experts: int, **kwargs):
        super().__init__(**kwargs)
        self.domains, self.experts = int(domains), int(experts)
        self.gates = [keras.layers.Dense(self.experts, activation="softmax", name=f"gate_{d}")
                      for d in range(self.domains)]

    def build(self, input_shapes):
        for g in self.gates:
            g.build(input_shapes[1])

    def call(self, inputs):
        experts, x, domain = inputs
        gates = ops.stack([g(x) for g in self.gates], axis=1)  # (batch, domains, k)
        gate = _own(gates, domain, self.domains)  # (batch, k)
        return ops.sum(experts * ops.expand_dims(gate, -1), axis=1)

    def compute_output_shape(self, input_shapes):
        return (input_shapes[0][0], input_shapes[0][-1])

    def get_config(self):
        return {**super().get_config(), "domains": self.domains, "experts": self.experts}


@keras.saving.register_keras_serializable(package="ecdctr")
class StarDense(keras.layers.Layer):
    """``[x (batch, d), domain (batch, 1)]`` → ``activation(x (W ⊙ W_domain) + b + b_domain)``.
    The domain weights start at one and the domain biases at zero: at initialisation every
    domain computes the shared layer."""

    def __init__(self, units: int, domains: int, activation: str | None = None, **kwargs):
        super().__init__(**kwargs)
        self.units, self.domains = int(units), int(domains)
        self.activation = keras.activations.get(activation)

    def build(self, input_shapes):
        d = input_shapes[0][-1]
        self.kernel = self.add_weight(name="kernel", shape=(d, self.units), initializer="glorot_uniform")
        self.bias = self.add_weight(name="bias", shape=(self.units,), initializer="zeros")
        self.domain_kernel = self.add_weight(name="domain_kernel", shape=(self.domains, d, self.units),
                                             initializer="ones")
        self.domain_bias = self.add_weight(name="domain_bias", shape=(self.domains, self.units), initializer="zeros")

    def call(self, inputs):
        x, domain = inputs
        per_domain = ops.einsum("bi,kij->bkj", x, self.kernel[None] * self.domain_kernel)
        per_domain = per_domain + self.bias + self.domain_bias  # (batch, domains, units)
        return self.activation(_own(per_domain, domain, self.domains))

    def compute_output_shape(self, input_shapes):
        return (input_shapes[0][0], self.units)

    def get_config(self):
        return {**super().get_config(), "units": self.units, "domains": self.domains,
                "activation": keras.activations.serialize(self.activation)}


@keras.saving.register_keras_serializable(package="ecdctr")
class PartitionedNorm(keras.layers.Layer):
    """``[x (batch, d), domain (batch, 1)]`` → ``x`` normalised with its own domain's statistics.

    Training: each domain's rows use that domain's batch mean and variance, and only that
    domain's moving averages move (a domain absent from the batch keeps its own). Inference:
    the row's domain's moving averages. Scale ``γ·γ_domain``, shift ``β + β_domain``."""

    def __init__(self, domains: int, momentum: float = 0.99, epsilon: float = 1e-3, **kwargs):
        super().__init__(**kwargs)
        self.domains, self.momentum, self.epsilon = int(domains), float(momentum), float(epsilon)

    def build(self, input_shapes):
        d = input_shapes[0][-1]
        k = self.domains
        self.gamma = self.add_weight(name="gamma", shape=(d,), initializer="ones")
        self.beta = self.add_weight(name="beta", shape=(d,), initializer="zeros")
        self.domain_gamma = self.add_weight(name="domain_gamma", shape=(k, d), initializer="ones")
        self.domain_beta = self.add_weight(name="domain_beta", shape=(k, d), initializer="zeros")
        self.moving_mean = self.add_weight(name="moving_mean", shape=(k, d), initializer="zeros", trainable=False)
        self.moving_variance = self.add_weight(name="moving_variance", shape=(k, d), initializer="ones",
                                               trainable=False)

    def call(self, inputs, training=None):
        x, domain = inputs
        onehot = _one_hot(domain, self.domains)  # (batch, k)
        if training:
            count = ops.sum(onehot, axis=0)  # (k,)
            safe = ops.expand_dims(ops.maximum(count, 1.0), -1)
            mean = ops.matmul(ops.transpose(onehot), x) / safe  # (k, d)
            var = ops.matmul(ops.transpose(onehot), ops.square(x)) / safe - ops.square(mean)
            var = ops.maximum(var, 0.0)
            present = ops.expand_dims(ops.cast(count > 0, x.dtype), -1)
            rate = (1.0 - self.momentum) * present
            self.moving_mean.assign(self.moving_mean + rate * (mean - self.moving_mean))
            self.moving_variance.assign(self.moving_variance + rate * (var - self.moving_variance))
        else:
            mean, var = self.moving_mean, self.moving_variance
        row_mean, row_var = ops.matmul(onehot, mean), ops.matmul(onehot, var)
        scale = ops.matmul(onehot, self.domain_gamma) * self.gamma
        shift = ops.matmul(onehot, self.domain_beta) + self.beta
        return (x - row_mean) / ops.sqrt(row_var + self.epsilon) * scale + shift

    def compute_output_shape(self, input_shapes):
        return input_shapes[0]

    def get_config(self):
        return {**super().get_config(), "domains": self.domains, "momentum": self.momentum,
                "epsilon": self.epsilon}
