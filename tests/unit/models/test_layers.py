"""Every layer: a hand-computed case, a bad argument, a config round trip, save → load → same output."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from ecdctr_pipeline.modeling.layers import (  # noqa: E402
    CrossNetwork, FrozenIdLookup, HistoricalEmbedding, MergedHistoricalEmbedding, MLPBlock, ModuloHash,
    SequenceMask, TargetAttention,
)


def roundtrip(layer, inputs, tmp_path, **call_kw):
    """Wrap in a functional model, save, load, compare; also rebuild from config."""
    if isinstance(inputs, list):
        ins = [keras.Input(shape=x.shape[1:], dtype=str(x.dtype)) for x in inputs]
    else:
        ins = keras.Input(shape=inputs.shape[1:], dtype=str(inputs.dtype))
    model = keras.Model(ins, layer(ins, **call_kw))
    want = model.predict(inputs, verbose=0)
    path = tmp_path / "m.keras"
    model.save(path)
    got = keras.models.load_model(path).predict(inputs, verbose=0)
    np.testing.assert_allclose(got, want, rtol=0, atol=0)
    clone = type(layer).from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    return want


def test_modulo_hash(tmp_path):
    ids = np.array([[0], [7], [-1], [123456789012]], dtype="int64")
    out = roundtrip(ModuloHash(5, name="h"), ids, tmp_path)
    assert out.ravel().tolist() == [0, 2, 4, 123456789012 % 5]
    with pytest.raises(ValueError, match="Received: num_buckets=0"):
        ModuloHash(0)


def test_frozen_id_lookup(tmp_path):
    layer = FrozenIdLookup(3, name="lk")
    layer.set_vocabulary(np.array([5, 9, 40]))
    ids = np.array([[9], [5], [6], [40], [41], [-3]], dtype="int64")
    assert roundtrip(layer, ids, tmp_path).ravel().tolist() == [2, 1, 0, 3, 0, 0]
    with pytest.raises(ValueError, match="sorted and unique"):
        FrozenIdLookup(2).set_vocabulary(np.array([3, 3]))
    with pytest.raises(ValueError, match="Received: vocab_size=0"):
        FrozenIdLookup(0)


def test_sequence_mask(tmp_path):
    out = roundtrip(SequenceMask(4, name="m"), np.array([[0], [2], [9]], dtype="int64"), tmp_path)
    assert out.tolist() == [[0, 0, 0, 0], [1, 1, 0, 0], [1, 1, 1, 1]]
    with pytest.raises(ValueError):
        SequenceMask(0)


def test_target_attention_hand_computed(tmp_path):
    layer = TargetAttention([2], name="att")
    q = np.array([[1.0, 0.0]], "float32")
    k = np.array([[[1.0, 0.0], [0.0, 1.0], [5.0, 5.0]]], "float32")
    m = np.array([[1.0, 1.0, 0.0]], "float32")  # the third step is padding
    layer.build([q.shape, k.shape, m.shape])
    layer.hidden[0].set_weights([np.zeros((8, 2), "float32"), np.zeros(2, "float32")])  # hidden = sigmoid(0) = .5
    layer.score.set_weights([np.ones((2, 1), "float32"), np.zeros(1, "float32")])  # score = 1.0 for every step
    out = roundtrip(layer, [q, k, m], tmp_path)
    np.testing.assert_allclose(out, [[1.0, 1.0]], atol=1e-6)  # 1*[1,0] + 1*[0,1]; padded step ignored
    with pytest.raises(ValueError, match="Received"):
        TargetAttention([])


def test_cross_network_hand_computed(tmp_path):
    layer = CrossNetwork(1, name="cross")
    x = np.array([[1.0, 2.0]], "float32")
    layer.build(x.shape)
    layer.dense[0].set_weights([np.eye(2, dtype="float32"), np.array([1.0, 0.0], "float32")])
    # x1 = x0 * (W x0 + b) + x0 = [1,2]*[2,2] + [1,2] = [3, 6]
    np.testing.assert_allclose(roundtrip(layer, x, tmp_path), [[3.0, 6.0]])
    with pytest.raises(ValueError, match="Received: num_layers=0"):
        CrossNetwork(0)


def test_mlp_block_training_flag_and_numbers(tmp_path):
    layer = MLPBlock([2], activation="linear", name="mlp")
    x = np.array([[1.0, 2.0], [3.0, 4.0]], "float32")
    layer.build(x.shape)
    layer.dense[0].set_weights([np.eye(2, dtype="float32"), np.zeros(2, "float32")])
    # inference: BN uses moving stats (0, 1) -> x / sqrt(1 + eps)
    np.testing.assert_allclose(layer(x, training=False), x / np.sqrt(1 + 1e-3), rtol=1e-5)
    # training: batch stats -> (x - mean) / sqrt(var + eps), mean [2,3], var [1,1]
    np.testing.assert_allclose(layer(x, training=True), [[-1, -1], [1, 1]] / np.sqrt(1 + 1e-3), rtol=1e-5)
    roundtrip(MLPBlock([3, 2], name="mlp2"), x, tmp_path)
    with pytest.raises(ValueError, match="Received: dropout=1.5"):
        MLPBlock([2], dropout=1.5)


def test_historical_block(tmp_path):
    layer = HistoricalEmbedding(2, 4, 3, name="hist_user")
    same = np.tile(np.arange(4, dtype="float32"), (3, 1))  # three identical monthly vectors
    other = np.random.default_rng(0).normal(size=(3, 4)).astype("float32")
    layer.set_tables(np.array([10, 20]), np.stack([same, other]))
    ids = np.array([[10], [20], [99]], dtype="int64")
    out = roundtrip(layer, ids, tmp_path)
    # identical tokens: attention weights are uniform over equal values, so the pooled vector is
    # the attention's output projection of the value projection of that one vector
    att = layer.attention
    v = same[0] @ att._value_dense.kernel.numpy().reshape(4, -1) + att._value_dense.bias.numpy().reshape(-1)
    expected = v @ att._output_dense.kernel.numpy().reshape(-1, 4) + att._output_dense.bias.numpy()
    np.testing.assert_allclose(out[0], expected, rtol=1e-5, atol=1e-5)
    # unknown id -> the defined vector: the attention over three zero tokens
    zero_out = keras.ops.convert_to_numpy(layer.pooled(np.zeros((1, 3, 4), "float32")))[0]
    np.testing.assert_allclose(out[2], zero_out, atol=1e-6)
    assert not np.allclose(out[1], out[2])
    # the frozen table is not trainable; the attention is
    assert all(not w.trainable for w in (layer.table, layer.lookup.keys))
    assert layer.attention.trainable_weights
    with pytest.raises(ValueError, match="Received: shape"):
        layer.set_tables(np.array([1, 2]), np.zeros((2, 2, 4)))


def test_historical_block_masks_months_an_id_was_not_seen_in(tmp_path):
    rng = np.random.default_rng(2)
    layer = HistoricalEmbedding(3, 4, 3, mask_unseen=True, name="hist_user")
    late = rng.normal(size=(3, 4)).astype("float32")
    late[0] = 0  # seen from the second month on
    full = rng.normal(size=(3, 4)).astype("float32")
    layer.set_tables(np.array([1, 2, 3]), np.stack([late, full, np.zeros((3, 4), "float32")]))
    out = roundtrip(layer, np.array([[1], [2], [3], [99]], dtype="int64"), tmp_path)
    # the masked id is the attention over its two months alone, pooled over those two
    two = keras.ops.convert_to_numpy(layer.attention(late[None, 1:], late[None, 1:]))[0].mean(axis=0)
    np.testing.assert_allclose(out[0], two, rtol=1e-5, atol=1e-5)
    # an id seen in every month is unaffected by the mask; one never seen (3, or unknown 99) gets
    # the attention's output on zero tokens
    np.testing.assert_allclose(out[1], keras.ops.convert_to_numpy(layer.attention(full[None], full[None]))[0].mean(0),
                               rtol=1e-5, atol=1e-5)
    zero = keras.ops.convert_to_numpy(layer.attention(np.zeros((1, 3, 4), "float32"), np.zeros((1, 3, 4), "float32")))
    np.testing.assert_allclose(out[2], zero[0].mean(0), atol=1e-6)
    np.testing.assert_allclose(out[3], out[2], atol=0)
    unmasked = HistoricalEmbedding(3, 4, 3, name="plain")
    unmasked.build((None, 1))
    unmasked.attention.set_weights(layer.attention.get_weights())
    unmasked.set_tables(np.array([1, 2, 3]), np.stack([late, full, np.zeros((3, 4), "float32")]))
    plain = keras.ops.convert_to_numpy(unmasked(np.array([[1], [2]], dtype="int64")))
    assert not np.allclose(plain[0], out[0]) and np.allclose(plain[1], out[1], atol=1e-5)


def test_month_positions_are_trained_and_tell_months_apart(tmp_path):
    layer = HistoricalEmbedding(2, 4, 3, mask_unseen=True, month_positions=True, name="hist_item")
    v = np.ones(4, "float32")
    # the same vector in month 1 only vs in month 3 only: equal without positions, not with them
    layer.set_tables(np.array([1, 2]), np.stack([[v, 0 * v, 0 * v], [0 * v, 0 * v, v]]))
    assert [w.name for w in layer.trainable_weights][0] == "month_positions"
    layer.positions.assign(np.random.default_rng(0).normal(size=(3, 4)))
    out = roundtrip(layer, np.array([[1], [2]], dtype="int64"), tmp_path)
    assert not np.allclose(out[0], out[1])
    layer.positions.assign(np.zeros((3, 4)))
    same = keras.ops.convert_to_numpy(layer(np.array([[1], [2]], dtype="int64")))
    np.testing.assert_allclose(same[0], same[1], atol=1e-6)


@pytest.mark.parametrize("mask_unseen", [False, True])
def test_merged_table_matches_block(tmp_path, mask_unseen):
    rng = np.random.default_rng(1)
    layer = HistoricalEmbedding(50, 8, 3, mask_unseen=mask_unseen, name="hist_item")
    tables = rng.normal(size=(50, 3, 8))
    tables[::3, :2] = 0  # ids first seen in the last month
    layer.set_tables(np.arange(0, 100, 2), tables)
    keys, merged = layer.merged_table(batch_size=7)
    served = MergedHistoricalEmbedding(50, 8, name="merged")
    served.set_table(keys, merged)
    ids = rng.integers(-5, 110, size=(300, 1)).astype("int64")
    np.testing.assert_allclose(served(ids), layer(ids), atol=1e-6)
    roundtrip(served, ids, tmp_path)
    with pytest.raises(ValueError, match="Received: dim=0"):
        MergedHistoricalEmbedding(3, 0)


# ------------------------------------------------------------------ multi-domain (Table 2's baselines)
DOMAINS = np.array([[0], [1], [1], [0]], dtype="int64")


def test_domain_select_and_expert_mixture_pick_each_rows_domain(tmp_path):
    from ecdctr_pipeline.modeling.layers import DomainSelect, ExpertMixture

    per_domain = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0], [7.0, 8.0]], dtype="float32")
    out = roundtrip(DomainSelect(2, name="sel"), [per_domain, DOMAINS], tmp_path)
    assert out.ravel().tolist() == [1.0, 4.0, 6.0, 7.0]

    rng = np.random.default_rng(0)
    experts = rng.normal(size=(4, 3, 5)).astype("float32")  # 3 experts of width 5
    x = rng.normal(size=(4, 6)).astype("float32")
    layer = ExpertMixture(2, 3, name="gates")
    got = roundtrip(layer, [experts, x, DOMAINS], tmp_path)
    for row, d in enumerate(DOMAINS.ravel()):
        gate = layer.gates[d](x[row:row + 1]).numpy()[0]  # the row's own domain's softmax gate
        assert gate.sum() == pytest.approx(1.0, abs=1e-6)
        np.testing.assert_allclose(got[row], gate @ experts[row], rtol=1e-5, atol=1e-6)


def test_star_dense_multiplies_shared_and_domain_weights(tmp_path):
    from ecdctr_pipeline.modeling.layers import StarDense

    x = np.arange(12, dtype="float32").reshape(4, 3) / 10
    layer = StarDense(2, 2, name="star")
    ins = [keras.Input((3,)), keras.Input((1,), dtype="int64")]
    model = keras.Model(ins, layer(ins))
    w = layer.kernel.numpy()
    np.testing.assert_allclose(model.predict([x, DOMAINS], verbose=0), x @ w, rtol=1e-5)  # at init: the shared layer
    dk = np.ones((2, 3, 2), "float32")
    dk[1] = 2.0
    layer.domain_kernel.assign(dk)
    layer.domain_bias.assign(np.array([[0.0, 0.0], [1.0, -1.0]], "float32"))
    want = np.where(DOMAINS == 1, x @ (2 * w) + np.array([1.0, -1.0]), x @ w)
    np.testing.assert_allclose(model.predict([x, DOMAINS], verbose=0), want, rtol=1e-5, atol=1e-6)
    roundtrip(StarDense(2, 2, activation="relu", name="star2"), [x, DOMAINS], tmp_path)


def test_partitioned_norm_keeps_each_domains_statistics(tmp_path):
    from ecdctr_pipeline.modeling.layers import PartitionedNorm

    rng = np.random.default_rng(1)
    domain = np.array([[0]] * 6 + [[1]] * 6, dtype="int64")
    x = np.concatenate([rng.normal(10.0, 2.0, (6, 3)), rng.normal(-5.0, 0.5, (6, 3))]).astype("float32")
    layer = PartitionedNorm(2, momentum=0.0, epsilon=0.0, name="pn")
    out = layer([x, domain], training=True).numpy()
    for d in (0, 1):  # each domain normalised on its own rows
        rows = out[domain.ravel() == d]
        np.testing.assert_allclose(rows.mean(0), 0.0, atol=1e-4)
        np.testing.assert_allclose(rows.std(0), 1.0, atol=1e-3)
        np.testing.assert_allclose(layer.moving_mean.numpy()[d], x[domain.ravel() == d].mean(0), rtol=1e-5)
    # a batch of domain 0 only: domain 1's moving statistics stay
    before = layer.moving_mean.numpy()[1].copy()
    layer([x[:6] + 1.0, domain[:6]], training=True)
    np.testing.assert_allclose(layer.moving_mean.numpy()[1], before)
    np.testing.assert_allclose(layer.moving_mean.numpy()[0], x[:6].mean(0) + 1.0, rtol=1e-5)
    # inference: the row's domain's moving statistics, scale γ·γ_d and shift β + β_d
    layer.domain_gamma.assign(np.array([[1.0] * 3, [2.0] * 3], "float32"))
    layer.beta.assign(np.full(3, 0.5, "float32"))
    got = layer([x, domain], training=False).numpy()
    mm, mv = layer.moving_mean.numpy(), layer.moving_variance.numpy()
    d = domain.ravel()
    want = (x - mm[d]) / np.sqrt(mv[d]) * np.where(d[:, None] == 1, 2.0, 1.0) + 0.5
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    roundtrip(PartitionedNorm(2, name="pn2"), [x, domain], tmp_path)


@pytest.mark.parametrize("head,ad_only", [("share_bottom", "tower_1_logit"), ("share_bottom", "cross_1"),
                                          ("share_bottom", "tower_1"), ("mmoe", "tower_1_logit"),
                                          ("conet", "tower_1_logit"), ("star", "star_logit")])
def test_multi_domain_heads_score_each_row_with_its_domains_parameters(head, ad_only):
    """Table 2's models: a row's score comes from its own domain's parameters (changing the ad
    domain's ones moves ad rows only), and the same features in the other domain score otherwise."""
    from ecdctr_pipeline.core.settings import Settings
    from ecdctr_pipeline.modeling.models import build_complete_model
    from ecdctr_pipeline.modeling.preprocessing import DOMAIN

    s = Settings.model_validate({"features": {"max_seq_len": 4, "hash_buckets": {"user_id": 50, "item_id": 40,
                                                                                  "category_id": 8, "item_brand": 10}},
                                 "cpm": {"hidden_units": [16, 8], "attention_units": [4], "embedding_dim": 4}})
    model = build_complete_model(s.cpm, s.features, None, name=head, domain_indicator=True, head=head)
    rng = np.random.default_rng(2)
    n = 8
    x = {}
    for t in model.inputs:
        shape = (n, *t.shape[1:])
        x[t.name] = (rng.integers(0, 3, shape) if "int" in str(t.dtype) else rng.normal(size=shape)).astype(str(t.dtype))
    x[DOMAIN] = np.array([[0], [1]] * (n // 2), "int64")
    ad = x[DOMAIN].ravel() == 1
    before = model.predict(x, verbose=0).ravel()
    assert np.all((before > 0) & (before < 1))
    swapped = model.predict({**x, DOMAIN: 1 - x[DOMAIN]}, verbose=0).ravel()
    assert not np.allclose(swapped, before)
    layer = model.get_layer(ad_only)
    for w in layer.weights:  # the ad domain's parameters only (star: the per-domain slice of the logit layer)
        v = w.numpy()
        if "domain" in w.path:
            v[1] += 0.5
        elif head != "star":
            v += 0.5
        w.assign(v)
    after = model.predict(x, verbose=0).ravel()
    np.testing.assert_array_equal(after[~ad], before[~ad])
    assert np.all(np.abs(after[ad] - before[ad]) > 1e-6)
    names = {layer.name for layer in model.layers}
    if head == "share_bottom":  # the paper's Share-Bottom shares only the embeddings: a cross network and MLP per domain
        assert {"cross_0", "cross_1", "tower_0", "tower_1"} <= names and "cross" not in names
        assert all(model.get_layer(f"tower_{d}").bn for d in (0, 1))
    from ecdctr_pipeline.modeling.models import MULTI_DOMAIN_HEADS
    from ecdctr_pipeline.tiers.variants import MULTI_DOMAIN

    assert tuple(h for h, _, _ in MULTI_DOMAIN) == MULTI_DOMAIN_HEADS  # the registry names every head once
    with pytest.raises(ValueError, match="head 'moe'"):
        build_complete_model(s.cpm, s.features, None, domain_indicator=True, head="moe")


def test_interest_attention_weighs_each_interest_by_an_exponential_gate(tmp_path):
    from ecdctr_pipeline.modeling.layers import InterestAttention
    from ecdctr_pipeline.modeling.layers.interest import EXP_CLIP

    q = np.array([[1.0, 2.0], [0.0, -1.0]], "float32")
    a, b = np.array([[1.0, 1.0, 1.0], [2.0, 0.0, 1.0]], "float32"), np.array([[3.0], [-2.0]], "float32")
    layer = InterestAttention(2, name="ia")
    layer.build([q.shape, a.shape, b.shape])
    # gate 0: hidden = relu(sum of inputs) in both units, logit = 0.1 * (h1 + h2) - 1; gate 1: constant logit 0.5
    layer.hidden[0].set_weights([np.ones((6, 2), "float32"), np.zeros(2, "float32")])
    layer.logit[0].set_weights([np.full((2, 1), 0.1, "float32"), np.full(1, -1.0, "float32")])
    layer.hidden[1].set_weights([np.zeros((6, 2), "float32"), np.zeros(2, "float32")])
    layer.logit[1].set_weights([np.zeros((2, 1), "float32"), np.full(1, 0.5, "float32")])
    out = roundtrip(layer, [q, a, b], tmp_path)
    s = np.maximum(np.concatenate([q, a, b], 1).sum(1, keepdims=True), 0)
    g0, g1 = np.exp(0.2 * s - 1.0), np.exp(0.5)  # unnormalised: the gates need not sum to one
    np.testing.assert_allclose(out, np.concatenate([g0 * a, g1 * b], 1), rtol=1e-5)
    layer.logit[1].set_weights([np.zeros((2, 1), "float32"), np.full(1, 1e4, "float32")])
    assert np.allclose(layer.gates([q, a, b]).numpy()[:, 1], np.exp(EXP_CLIP))  # clipped, never inf
    with pytest.raises(ValueError, match="Received: hidden_units=0"):
        InterestAttention(0)


def test_minet_reads_the_source_sequence_through_its_own_attention():
    """MiNet (Table 2): the ad rows' natural clicks change the score through ``src_attention``;
    the model without ``source_sequence`` has no such input."""
    from ecdctr_pipeline.core.schema import SRC_SEQ_ITEMS, SRC_SEQ_LEN
    from ecdctr_pipeline.core.settings import Settings
    from ecdctr_pipeline.modeling.models import build_complete_model

    s = Settings.model_validate({"features": {"max_seq_len": 4, "hash_buckets": {"user_id": 50, "item_id": 40,
                                                                                  "category_id": 8, "item_brand": 10}},
                                 "cpm": {"hidden_units": [16, 8], "attention_units": [4], "embedding_dim": 4}})
    model = build_complete_model(s.cpm, s.features, None, name="minet", source_sequence=True)
    plain = build_complete_model(s.cpm, s.features, None)
    assert {t.name for t in model.inputs} - {t.name for t in plain.inputs} == {
        SRC_SEQ_ITEMS, "src_hist_category_ids", SRC_SEQ_LEN}
    rng = np.random.default_rng(3)
    n = 6
    x = {t.name: (rng.integers(1, 30 if len(t.shape) > 2 or t.shape[1] > 1 else 3, (n, *t.shape[1:]))
                  if "int" in str(t.dtype) else rng.normal(size=(n, *t.shape[1:]))).astype(str(t.dtype))
         for t in model.inputs}  # sequences: items 1..29; scalar ids and categories 1..2
    x[SRC_SEQ_LEN] = np.full((n, 1), 4, "int64")
    before = model.predict(x, verbose=0).ravel()
    other = dict(x, **{SRC_SEQ_ITEMS: (x[SRC_SEQ_ITEMS] + 7) % 40})
    assert np.all(np.abs(model.predict(other, verbose=0).ravel() - before) > 1e-7)
    # an empty source sequence masks every step: its items no longer matter
    empty = dict(x, **{SRC_SEQ_LEN: np.zeros((n, 1), "int64")})
    np.testing.assert_allclose(model.predict(dict(empty, **{SRC_SEQ_ITEMS: other[SRC_SEQ_ITEMS]}), verbose=0),
                               model.predict(empty, verbose=0), rtol=1e-6)


def test_keep_style_plugging_feeds_the_historical_vectors_beside_the_last_mlp_layer():
    """``cpm.hist_plug: last_mlp`` (KEEP's knowledge plugging): the historical blocks skip the
    input and the cross network and meet the MLP's last hidden layer before the output."""
    from ecdctr_pipeline.core.settings import Settings
    from ecdctr_pipeline.data.embedding_sets import HistoricalTables
    from ecdctr_pipeline.modeling.models import build_complete_model

    s = Settings.model_validate({"features": {"max_seq_len": 4, "hash_buckets": {"user_id": 50, "item_id": 40,
                                                                                  "category_id": 8, "item_brand": 10}},
                                 "cpm": {"hidden_units": [16, 8], "attention_units": [4], "embedding_dim": 4}})
    rng = np.random.default_rng(0)
    hist = HistoricalTables("2026-10", ("2026-09",), np.arange(1, 6), rng.normal(size=(5, 1, 6)).astype("float32"),
                            np.arange(1, 4), rng.normal(size=(3, 1, 6)).astype("float32"))
    early = build_complete_model(s.cpm, s.features, hist, name="early")
    s.cpm.hist_plug = "last_mlp"
    late = build_complete_model(s.cpm, s.features, hist, name="late")
    width = lambda m, name: m.get_layer(name).output.shape[-1]  # noqa: E731
    assert width(early, "features_concat") == width(late, "features_concat") + 2 * 6
    assert [tuple(t.shape) for t in late.get_layer("plugged_concat").input] == [(None, 8), (None, 6), (None, 6)]
    assert "plugged_concat" not in {layer.name for layer in early.layers}
    # the output layer reads the last hidden layer and both historical vectors
    assert late.get_layer("ctr").kernel.shape == (8 + 12, 1)
    with pytest.raises(ValueError, match="not with a multi-domain head"):
        build_complete_model(s.cpm, s.features, hist, domain_indicator=True, head="mmoe")
