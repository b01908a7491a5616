"""A row-sparse Adam for the embedding tables (`training.optimizer: lazy_adam`; the default is Keras's Adam).

Keras 3's :class:`keras.optimizers.Adam` subtracts the momentum from a gradient, so an embedding
table's sparse gradient (a :class:`tf.IndexedSlices` of the rows a batch looked up) is made dense
and every row of every id table (users, items, categories) is read and written each step:
``make bench-train``'s breakdown measured that update as 21-33 % of a step. :class:`LazyAdam`
updates such a table the way TensorFlow Addons' ``LazyAdam`` and TF 1's sparse Adam did: the
batch's distinct rows (duplicate lookups summed first) get Adam's update, with the same step
count and bias correction; the moments of rows the batch did not look up stay as they are,
where dense Adam decays them and keeps moving the rows by their old momentum. A row looked up
several times gets the sum of its gradients, squared once for the second moment, as Adam on the
dense gradient does (Keras's Adam given the sparse gradient itself squares each lookup's part
before summing them, a smaller second moment for repeated rows). Dense gradients
(every other weight) take Adam's own update unchanged. ``training.optimizer: lazy_adam`` picks
it; the default stays ``adam``: on this project's 2-core machine at ``small`` (user, item and
category tables of 50 000 / 20 000 / 1 000 rows x 16) the two trained at the same samples/s within
the run-to-run noise (~18-20k/s at batch 512, ~24k/s at 10 000; ``/tmp`` runs of the trainers'
``fit`` on ``make bench-train``'s table), because such tables are a few MB; the dense update grows
with the vocabulary, the lazy one with the batch.
"""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="ecdctr")
class LazyAdam(keras.optimizers.Adam):
    """:class:`keras.optimizers.Adam` with a row-sparse update for sparse gradients (module doc)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.amsgrad:
            raise ValueError("LazyAdam does not implement amsgrad")

    def update_step(self, gradient, variable, learning_rate):
        import tensorflow as tf

        if not isinstance(gradient, tf.IndexedSlices):
            return super().update_step(gradient, variable, learning_rate)
        dtype = variable.dtype
        step = ops.cast(self.iterations + 1, dtype)
        beta_1, beta_2 = ops.cast(self.beta_1, dtype), ops.cast(self.beta_2, dtype)
        alpha = (ops.cast(learning_rate, dtype) * ops.sqrt(1 - ops.power(beta_2, step))
                 / (1 - ops.power(beta_1, step)))
        rows, where = tf.unique(gradient.indices)
        grad = tf.math.unsorted_segment_sum(tf.cast(gradient.values, dtype), where, tf.shape(rows)[0])
        index = self._get_variable_index(variable)
        m, v = self._momentums[index], self._velocities[index]
        m_rows = beta_1 * tf.gather(m.value, rows) + (1 - beta_1) * grad
        v_rows = beta_2 * tf.gather(v.value, rows) + (1 - beta_2) * tf.square(grad)
        self.assign(m, tf.IndexedSlices(m_rows, rows))
        self.assign(v, tf.IndexedSlices(v_rows, rows))
        self.assign_sub(variable, tf.IndexedSlices(alpha * m_rows / (tf.sqrt(v_rows) + self.epsilon), rows))


def make(name: str, learning_rate: float) -> keras.optimizers.Optimizer:
    """The optimizer ``training.optimizer`` names: ``lazy_adam`` or ``adam``."""
    if name == "lazy_adam":
        return LazyAdam(learning_rate)
    if name == "adam":
        return keras.optimizers.Adam(learning_rate)
    raise ValueError(f"unknown optimizer {name!r} (lazy_adam or adam)")
