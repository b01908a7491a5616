"""LazyAdam (modeling/optimizers.py): Adam's arithmetic on the rows a batch looks up, nothing on
the others, and the path the trainers' complete model really takes."""

import datetime as dt

import keras
import numpy as np
import pytest
import tensorflow as tf

from ecdctr_pipeline.modeling import optimizers


def _train(opt, batches, rows=6, dim=3, dense=False):
    keras.utils.set_random_seed(0)
    table = keras.Variable(np.random.default_rng(0).normal(size=(rows, dim)).astype("float32"))
    opt.build([table])
    for ids in batches:
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(tf.square(tf.gather(table, ids) - 1.0))
        grad = tape.gradient(loss, [table])[0]
        assert isinstance(grad, tf.IndexedSlices)
        opt.apply([tf.convert_to_tensor(grad) if dense else grad], [table])
    return table.numpy()


def test_rows_every_batch_looks_up_take_adams_update_with_duplicates_summed():
    # every row, row 2 three times; the reference is Adam on the dense gradient (Keras's Adam
    # given the IndexedSlices itself squares each duplicate before summing them)
    batches = [tf.constant([0, 1, 2, 3, 4, 5, 2, 2])] * 4
    lazy = _train(optimizers.LazyAdam(0.05), batches)
    dense = _train(keras.optimizers.Adam(0.05), batches, dense=True)
    np.testing.assert_allclose(lazy, dense, rtol=1e-4, atol=1e-5)
    start = np.random.default_rng(0).normal(size=(6, 3)).astype("float32")
    assert np.abs(lazy - start).min() > 0.01  # every row moved


def test_a_row_no_batch_looks_up_keeps_its_value_and_moments():
    batches = [tf.constant([0, 1])] * 2 + [tf.constant([1])] * 3
    lazy = _train(optimizers.LazyAdam(0.05), batches)
    dense = _train(keras.optimizers.Adam(0.05), batches, dense=True)
    start = np.random.default_rng(0).normal(size=(6, 3)).astype("float32")
    np.testing.assert_array_equal(lazy[2:], start[2:])  # never looked up: untouched
    assert np.abs(dense[0] - lazy[0]).max() > 1e-3  # dense Adam keeps moving row 0 by its momentum
    np.testing.assert_allclose(lazy[1], dense[1], rtol=1e-4, atol=1e-5)  # looked up every step: the same


def test_the_trainers_id_tables_get_sparse_gradients_and_the_optimizer_survives_a_checkpoint(tmp_path):
    from ecdctr_pipeline.core.settings import Settings
    from ecdctr_pipeline.modeling.models import build_complete_model, compile_model

    s = Settings()
    model = compile_model(build_complete_model(s.cpm, s.features, None, name="opt"), 0.001, optimizer="lazy_adam")
    assert isinstance(model.optimizer, optimizers.LazyAdam)
    x = {i.name: tf.zeros([4] + list(i.shape[1:]), i.dtype) for i in model.inputs}
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(model(x, training=True))
    grads = dict(zip((v.path for v in model.trainable_variables), tape.gradient(loss, model.trainable_variables)))
    sparse = sorted(p for p, g in grads.items() if isinstance(g, tf.IndexedSlices))
    assert any("user" in p for p in sparse) and any("item" in p for p in sparse), sparse
    model.save(tmp_path / "m.keras")
    back = keras.models.load_model(tmp_path / "m.keras", compile=True)
    assert isinstance(back.optimizer, optimizers.LazyAdam)


def test_an_unknown_optimizer_is_named():
    with pytest.raises(ValueError, match="unknown optimizer 'sgd'"):
        optimizers.make("sgd", 0.1)
