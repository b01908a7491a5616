"""Precise BatchNorm statistics after training (the "precise BN" of fvcore / Detectron2).

During training a BatchNorm layer normalises with the batch's statistics and keeps an
exponential moving average of them (momentum 0.99) for inference. A fine-tuning run of a few
hundred steps leaves that average partly at its initial value (0 / 1) or at the previous
model's (A-CTR starts from the CPM): the model is then *scored* with statistics no batch ever
had. :func:`settle` replaces each :class:`~ecdctr_pipeline.modeling.layers.MLPBlock`'s moving
mean and variance by the population statistics of the trained weights on the training rows,
layer by layer (each layer's statistics are those of its inputs normalised with the settled
statistics of the layers before it, as inference computes them), and reports how far the
moving averages were from them (``bn_gap``: the largest |moving mean − population mean| in
population standard deviations, over the layers' units).

Rows: the whole training pass when it has at most ``rows`` rows, else every k-th batch (k =
ceil(rows in the window / ``rows``)), so memory is bounded by ``rows`` × the block's input width.
"""

from __future__ import annotations

import logging

import numpy as np

log = logging.getLogger(__name__)


def _blocks(model) -> list:
    from ecdctr_pipeline.modeling.layers import MLPBlock

    out = []
    for layer in model.layers:
        if isinstance(layer, MLPBlock) and layer.bn:
            if len(layer._inbound_nodes) != 1:  # called twice: its input is not one tensor
                log.warning("%s: BatchNorm block %s is called %d times; its statistics are left as trained",
                            model.name, layer.name, len(layer._inbound_nodes))
                continue
            out.append(layer)
    return out


def settle(model, batches, *, num_rows: int, batch_size: int, rows: int) -> dict:
    """Set the population statistics of every BatchNorm block of ``model`` from ``batches`` (an
    iterable of ``(inputs, label)`` batches of the training window, ``num_rows`` rows in all).
    Returns ``{"bn_gap", "bn_var_ratio", "bn_rows"}`` (``{}`` when the model has no such block
    or ``rows`` is 0)."""
    import keras

    blocks = _blocks(model)
    if not blocks or rows <= 0:
        return {}
    taps = keras.Model(model.input, [b.input for b in blocks])
    every = max(1, -(-num_rows // max(rows, 1)))
    xs: list[list[np.ndarray]] = [[] for _ in blocks]
    for i, (x, _) in enumerate(batches):
        if i % every:
            continue
        got = taps(x, training=False)
        for j, t in enumerate(got if isinstance(got, (list, tuple)) else [got]):
            xs[j].append(np.asarray(t, np.float64))
    if not xs[0]:
        return {}
    gap, ratio, seen = 0.0, [], 0
    for block, parts in zip(blocks, xs):
        h = np.concatenate(parts)
        seen = max(seen, len(h))
        for dense, bn in zip(block.dense, block.bn):
            kernel, bias = (np.asarray(w, np.float64) for w in dense.get_weights()[:2])
            h = h @ kernel + bias
            mean, var = h.mean(axis=0), h.var(axis=0)
            old_mean = np.asarray(bn.moving_mean, np.float64)
            old_var = np.asarray(bn.moving_variance, np.float64)
            sd = np.sqrt(var + bn.epsilon)
            gap = max(gap, float(np.max(np.abs(old_mean - mean) / sd)))
            ratio.append(float(np.median((old_var + bn.epsilon) / (var + bn.epsilon))))
            bn.moving_mean.assign(mean.astype(np.float32))
            bn.moving_variance.assign(var.astype(np.float32))
            gamma = np.asarray(bn.gamma, np.float64) if bn.scale else 1.0
            beta = np.asarray(bn.beta, np.float64) if bn.center else 0.0
            h = np.asarray(block.act(((h - mean) / sd * gamma + beta).astype(np.float32)), np.float64)
    return {"bn_gap": round(gap, 4), "bn_var_ratio": round(float(np.median(ratio)), 4), "bn_rows": int(seen)}
