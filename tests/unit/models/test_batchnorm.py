"""Precise BatchNorm statistics after training (modeling/batchnorm.py)."""

import numpy as np
import pytest

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _model():
    import keras

    from ecdctr_pipeline.modeling.layers import MLPBlock

    x = keras.Input(shape=(5,), name="x")
    h = MLPBlock([6, 4], name="mlp")(x)
    return keras.Model(x, keras.layers.Dense(1, activation="sigmoid", name="ctr")(h))


def _batches(x, y, batch):
    return [(x[i:i + batch], y[i:i + batch]) for i in range(0, len(x), batch)]


def test_settle_sets_the_population_statistics_layer_by_layer_and_reports_the_gap():
    import keras

    from ecdctr_pipeline.modeling import batchnorm

    keras.utils.set_random_seed(3)
    rng = np.random.default_rng(0)
    x = (rng.normal(size=(600, 5)) * [1, 2, 3, 4, 5] + 7).astype("float32")  # far from BN's initial 0 / 1
    y = (rng.random(600) < 0.3).astype("float32")
    model = _model()
    model.compile("adam", "binary_crossentropy")
    model.fit(x, y, batch_size=100, epochs=1, verbose=0)  # 6 steps: the moving averages barely moved
    block = model.get_layer("mlp")
    out = batchnorm.settle(model, _batches(x, y, 100), num_rows=600, batch_size=100, rows=10_000)
    assert out["bn_rows"] == 600 and out["bn_gap"] > 1.0, out
    # layer 0: the population statistics of the first dense layer's outputs
    h0 = x.astype(np.float64) @ np.asarray(block.dense[0].kernel) + np.asarray(block.dense[0].bias)
    np.testing.assert_allclose(np.asarray(block.bn[0].moving_mean), h0.mean(0), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(np.asarray(block.bn[0].moving_variance), h0.var(0), rtol=1e-4, atol=1e-4)
    # layer 1: its inputs normalised with layer 0's settled statistics, as inference sees them
    bn0 = block.bn[0]
    a0 = np.maximum(0, (h0 - h0.mean(0)) / np.sqrt(h0.var(0) + bn0.epsilon) * np.asarray(bn0.gamma)
                    + np.asarray(bn0.beta))
    h1 = a0 @ np.asarray(block.dense[1].kernel) + np.asarray(block.dense[1].bias)
    np.testing.assert_allclose(np.asarray(block.bn[1].moving_mean), h1.mean(0), rtol=1e-3, atol=1e-3)
    # settled: a second pass finds no gap, and every batch of ``rows`` is used once
    again = batchnorm.settle(model, _batches(x, y, 100), num_rows=600, batch_size=100, rows=10_000)
    assert again["bn_gap"] < 1e-3, again
    # a cap of 200 rows takes every 3rd batch
    assert batchnorm.settle(model, _batches(x, y, 100), num_rows=600, batch_size=100, rows=200)["bn_rows"] == 200


def test_settle_is_off_at_zero_rows_and_for_models_without_batchnorm():
    import keras

    from ecdctr_pipeline.modeling import batchnorm

    x = np.zeros((10, 5), "float32")
    assert batchnorm.settle(_model(), _batches(x, x[:, 0], 5), num_rows=10, batch_size=5, rows=0) == {}
    i = keras.Input(shape=(5,))
    plain = keras.Model(i, keras.layers.Dense(1)(i))
    assert batchnorm.settle(plain, _batches(x, x[:, 0], 5), num_rows=10, batch_size=5, rows=100) == {}
