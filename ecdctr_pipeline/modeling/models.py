"""Model builders. Blocks come from :mod:`.layers`; layer names are fixed so CPM and A-CTR
weights transfer by name.

* :func:`build_tpm_model` — the tiny pre-trained model: exact-id user/item embeddings
  (their rows are the monthly snapshots), hashed category and profile embeddings, a
  shallow MLP.
* :func:`build_complete_model` — CPM / A-CTR / Target-only: id, profile and context
  embeddings, DIN target attention over the behaviour sequence, log counters, the two
  historical-embedding vectors (omitted for Target-only), a DCN-v2 cross network, an MLP
  with BatchNorm and a sigmoid output ``ctr``.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np

from ecdctr_pipeline.data.embedding_sets import HistoricalTables  # noqa: F401 - the models consume it
from ecdctr_pipeline.modeling.preprocessing import DOMAIN, DOMAIN_CODES, FeatureLayout
from ecdctr_pipeline.modeling.layers import (
    CrossNetwork, DomainSelect, ExpertMixture, FrozenIdLookup, HistoricalEmbedding, InterestAttention,
    MergedHistoricalEmbedding, MLPBlock, ModuloHash, PartitionedNorm, SequenceMask, StarDense, TargetAttention,
)
from ecdctr_pipeline.core.schema import SEQ_CATS, SEQ_ITEMS, SEQ_LEN, SRC_SEQ_CATS, SRC_SEQ_ITEMS, SRC_SEQ_LEN
from ecdctr_pipeline.core.settings import CPMSettings, FeatureSettings, TPMSettings

OUTPUT = "ctr"


def _cat_rows(name: str, layout: FeatureLayout, features: FeatureSettings) -> int:
    """Embedding rows of a categorical input: its vocabulary + 1 missing bucket, or hashed."""
    vs = layout.vocab(name)
    return vs + 1 if vs is not None else features.buckets(name)


def _embed_categorical(inputs: dict, layout: FeatureLayout, dim: int, features: FeatureSettings,
                       prefix: str = "emb_") -> list:
    out = []
    for name in layout.categorical:
        rows = _cat_rows(name, layout, features)
        x = inputs[name]
        if layout.vocab(name) is None:  # hashed (brand): non-negative bucket, -1 (missing) included
            x = ModuloHash(rows, name=f"hash_{name}")(x)
        out.append(keras.layers.Flatten(name=f"flat_{name}")(
            keras.layers.Embedding(rows, dim, name=f"{prefix}{name}")(x)))
    return out


# ------------------------------------------------------------------ TPM
def build_tpm_model(cfg: TPMSettings, features: FeatureSettings, user_vocab: np.ndarray,
                    item_vocab: np.ndarray) -> keras.Model:
    layout = FeatureLayout.tpm(features)
    names = ("user_id", "item_id", "category_id") + layout.categorical
    inputs = {n: keras.Input(shape=(1,), dtype="int64", name=n) for n in names}
    d = cfg.embedding_dim
    user_rows = FrozenIdLookup(len(user_vocab), name="tpm_user_lookup")
    item_rows = FrozenIdLookup(len(item_vocab), name="tpm_item_lookup")
    user_emb = keras.layers.Embedding(len(user_vocab) + 1, d, name="tpm_user_embedding")
    item_emb = keras.layers.Embedding(len(item_vocab) + 1, d, name="tpm_item_embedding")
    parts = [keras.layers.Flatten(name="flat_user")(user_emb(user_rows(inputs["user_id"]))),
             keras.layers.Flatten(name="flat_item")(item_emb(item_rows(inputs["item_id"])))]
    cat = ModuloHash(features.hash_buckets["category_id"], name="hash_category_id")(inputs["category_id"])
    parts.append(keras.layers.Flatten(name="flat_category_id")(
        keras.layers.Embedding(features.hash_buckets["category_id"], d, name="tpm_emb_category_id")(cat)))
    parts += _embed_categorical(inputs, layout, d, features, prefix="tpm_emb_")
    x = keras.layers.Concatenate(name="tpm_concat")(parts)
    for i, u in enumerate(cfg.hidden_units):
        x = keras.layers.Dense(u, activation="relu", name=f"tpm_dense_{i}")(x)
    if cfg.user_item_dot:  # the taste match as a term of its own: an MLP of concatenated vectors
        logit = keras.layers.Add(name="tpm_logit")(  # learns it poorly (README "TPM")
            [keras.layers.Dense(1, name="tpm_mlp_logit")(x),
             keras.layers.Dot(axes=1, name="tpm_user_item_dot")(parts[:2])])
        out = keras.layers.Activation("sigmoid", name=OUTPUT)(logit)
    else:
        out = keras.layers.Dense(1, activation="sigmoid", name=OUTPUT)(x)
    model = keras.Model(inputs, out, name="tpm")
    user_rows.set_vocabulary(np.asarray(user_vocab, np.int64))
    item_rows.set_vocabulary(np.asarray(item_vocab, np.int64))
    return model


# ------------------------------------------------------------------ complete model
def complete_inputs(layout: FeatureLayout) -> dict:
    inputs = {n: keras.Input(shape=(1,), dtype="int64", name=n) for n in ("user_id", "item_id", "category_id")}
    for n in layout.categorical:
        inputs[n] = keras.Input(shape=(1,), dtype="int64", name=n)
    for n in layout.dense:
        inputs[n] = keras.Input(shape=(1,), dtype="float32", name=n)
    for n in layout.sequences:
        inputs[n] = keras.Input(shape=(layout.max_seq_len,), dtype="int64", name=n)
    for n in layout.lengths:
        inputs[n] = keras.Input(shape=(1,), dtype="int64", name=n)
    return inputs


@dataclass(frozen=True)
class MergedTables:
    """Historical vectors folded into one table per side (serving): sorted ids, ``(n+1, d)``, row 0 unknown."""

    user_ids: np.ndarray
    user_merged: np.ndarray
    item_ids: np.ndarray
    item_merged: np.ndarray


def build_complete_model(cfg: CPMSettings, features: FeatureSettings, hist: HistoricalTables | None,
                         name: str = "complete", merged: MergedTables | None = None, *,
                         domain_indicator: bool = False, head: str | None = None,
                         source_sequence: bool = False) -> keras.Model:
    """The complete CTR network; ``hist=None`` builds the Target-only variant (no TPM inputs).

    ``cfg.hist_plug`` ``last_mlp`` feeds the historical blocks beside the MLP's last hidden layer
    instead of the input (KEEP's knowledge plugging).

    With ``merged`` the two historical blocks are replaced by single lookups into the merged
    tables (the serving form); every other layer keeps its name and shape. ``domain_indicator``
    adds the ``domain`` input, embedded like the other categorical inputs (Sample merging).
    ``head`` (one of :data:`MULTI_DOMAIN_HEADS`, with ``domain_indicator``) replaces the MLP and
    output by a multi-domain head that routes each row by its domain (the paper's Table 2).
    ``source_sequence`` builds MiNet (Table 2): the ad rows' natural clicks (``src_hist_*``) get
    an attention of their own, with the candidate mapped into the source domain by a transfer
    matrix, and the interest-level attention weighs the user embedding (long-term interest), the
    source and the target interests (:class:`~ecdctr_pipeline.modeling.layers.InterestAttention`).
    """
    if head is not None and (head not in MULTI_DOMAIN_HEADS or not domain_indicator):
        raise ValueError(f"head {head!r}: expected one of {', '.join(MULTI_DOMAIN_HEADS)}, with domain_indicator")
    layout = FeatureLayout.complete(features, domain_indicator=domain_indicator, source_sequence=source_sequence)
    inputs = complete_inputs(layout)
    d = cfg.embedding_dim
    hb = features.hash_buckets
    item_hash = ModuloHash(hb["item_id"], name="hash_item_id")
    cat_hash = ModuloHash(hb["category_id"], name="hash_category_id")
    user_emb = keras.layers.Embedding(hb["user_id"], d, name="emb_user_id")
    item_emb = keras.layers.Embedding(hb["item_id"], d, name="emb_item_id")
    cat_emb = keras.layers.Embedding(hb["category_id"], d, name="emb_category_id")
    flat = lambda n, x: keras.layers.Reshape((d,), name=f"flat_{n}")(x)  # noqa: E731
    u = flat("user_id", user_emb(ModuloHash(hb["user_id"], name="hash_user_id")(inputs["user_id"])))
    it = flat("item_id", item_emb(item_hash(inputs["item_id"])))
    c = flat("category_id", cat_emb(cat_hash(inputs["category_id"])))
    # behaviour sequence: shared item/category embeddings, DIN attention with the candidate as query
    seq = keras.layers.Concatenate(name="seq_concat")(
        [item_emb(item_hash(inputs[SEQ_ITEMS])), cat_emb(cat_hash(inputs[SEQ_CATS]))])
    mask = SequenceMask(layout.max_seq_len, name="seq_mask")(inputs[SEQ_LEN])
    query = keras.layers.Concatenate(name="query_concat")([it, c])
    interest = TargetAttention(cfg.attention_units, name="din_attention")([query, seq, mask])
    if source_sequence:  # MiNet: item-level attention over the source clicks, then interest-level
        src = keras.layers.Concatenate(name="src_seq_concat")(
            [item_emb(item_hash(inputs[SRC_SEQ_ITEMS])), cat_emb(cat_hash(inputs[SRC_SEQ_CATS]))])
        src_mask = SequenceMask(layout.max_seq_len, name="src_seq_mask")(inputs[SRC_SEQ_LEN])
        src_query = keras.layers.Dense(2 * d, use_bias=False, name="src_query_transfer")(query)
        src_interest = TargetAttention(cfg.attention_units, name="src_attention")([src_query, src, src_mask])
        parts = [InterestAttention(cfg.attention_units[0], name="interest_attention")(
            [query, u, src_interest, interest]), it, c]
    else:
        parts = [u, it, c, interest]
    parts += _embed_categorical(inputs, layout, d, features)
    parts.append(keras.layers.Concatenate(name="counters")([inputs[n] for n in layout.dense]))
    historical = []
    if merged is not None:
        d_h = merged.user_merged.shape[1]
        hu = MergedHistoricalEmbedding(len(merged.user_ids), d_h, name="hist_user")
        hi = MergedHistoricalEmbedding(len(merged.item_ids), d_h, name="hist_item")
        historical = [hu(inputs["user_id"]), hi(inputs["item_id"])]
    elif hist is not None:
        opts = {"mask_unseen": cfg.hist_mask_unseen, "month_positions": cfg.hist_month_positions}
        hu = HistoricalEmbedding(len(hist.user_ids), hist.dim, len(hist.months), name="hist_user", **opts)
        hi = HistoricalEmbedding(len(hist.item_ids), hist.dim, len(hist.months), name="hist_item", **opts)
        historical = [hu(inputs["user_id"]), hi(inputs["item_id"])]
    late = bool(historical) and cfg.hist_plug == "last_mlp"
    if late and head is not None:
        raise ValueError("cpm.hist_plug last_mlp plugs the historical blocks beside the MLP's last layer: not with "
                         f"a multi-domain head ({head})")
    if not late:
        parts += historical
    x = keras.layers.Concatenate(name="features_concat")(parts)
    if head != "share_bottom":  # Share-Bottom shares only the embeddings (and DIN): a cross network per domain
        x = CrossNetwork(cfg.cross_layers, name="cross")(x)
    if head is None:
        x = MLPBlock(cfg.hidden_units, dropout=cfg.dropout, name="mlp")(x)
        if late:  # KEEP's knowledge plugging: the pre-trained vectors beside the last hidden layer
            x = keras.layers.Concatenate(name="plugged_concat")([x, *historical])
        out = keras.layers.Dense(1, activation="sigmoid", name=OUTPUT)(x)
    else:
        out = _multi_domain_head(head, cfg, x, inputs[DOMAIN])
    model = keras.Model(inputs, out, name=name)
    if merged is not None:
        model.get_layer("hist_user").set_table(merged.user_ids, merged.user_merged)
        model.get_layer("hist_item").set_table(merged.item_ids, merged.item_merged)
    elif hist is not None:
        model.get_layer("hist_user").set_tables(hist.user_ids, hist.user_vectors)
        model.get_layer("hist_item").set_tables(hist.item_ids, hist.item_vectors)
    return model


# ------------------------------------------------------------------ multi-domain heads (Table 2)
MULTI_DOMAIN_HEADS = ("share_bottom", "mmoe", "star", "conet")
MMOE_EXPERTS = 4


def _multi_domain_head(kind: str, cfg: CPMSettings, x, domain):
    """The head of a model trained on both domains' rows, on the shared features ``x`` (embeddings,
    DIN interest, counters, cross network): the MLP ``cfg.hidden_units`` split into a shared or
    routed bottom (all layers but the last) and a tower per domain (the last layer), each row
    scored by its own domain's tower.

    * ``share_bottom`` — the shared bottom is the embeddings only (and DIN's attention over
      them): ``x`` is then the features before the cross network, and each domain has its own
      cross network and whole MLP (with BatchNorm), as the paper's Share-Bottom baseline;
    * ``mmoe`` — :data:`MMOE_EXPERTS` bottom MLPs mixed by a softmax gate per domain;
    * ``star`` — partitioned normalisation of ``x``, then star-topology layers (shared weights
      times per-domain weights, :class:`StarDense`) for the whole MLP, plus STAR's auxiliary
      network (a linear logit of ``x``, which embeds the domain indicator);
    * ``conet`` — one MLP per domain with CoNet's cross connections (a shared matrix feeds each
      domain's layer with the other domain's previous layer).
    """
    units = list(cfg.hidden_units)
    bottom, top = (units[:-1], units[-1:]) if len(units) > 1 else (units, units)
    domains = len(DOMAIN_CODES)

    def routed(per_domain: list) -> keras.KerasTensor:
        logits = keras.layers.Concatenate(name="domain_logits")(
            [keras.layers.Dense(1, name=f"tower_{d}_logit")(h) for d, h in enumerate(per_domain)])
        return DomainSelect(domains, name="domain_select")([logits, domain])

    def towers(h) -> list:
        return [MLPBlock(top, batch_norm=False, dropout=cfg.dropout, name=f"tower_{d}")(h) for d in range(domains)]

    if kind == "share_bottom":
        logit = routed([MLPBlock(units, dropout=cfg.dropout, name=f"tower_{d}")(
            CrossNetwork(cfg.cross_layers, name=f"cross_{d}")(x)) for d in range(domains)])
    elif kind == "mmoe":
        experts = [keras.layers.Reshape((1, bottom[-1]), name=f"expert_{k}_row")(
            MLPBlock(bottom, dropout=cfg.dropout, name=f"expert_{k}")(x)) for k in range(MMOE_EXPERTS)]
        stacked = keras.layers.Concatenate(axis=1, name="experts")(experts)
        logit = routed(towers(ExpertMixture(domains, MMOE_EXPERTS, name="gates")([stacked, x, domain])))
    elif kind == "star":
        h = PartitionedNorm(domains, name="partitioned_norm")([x, domain])
        for i, u in enumerate(units):
            h = StarDense(u, domains, activation="relu", name=f"star_{i}")([h, domain])
        main = StarDense(1, domains, name="star_logit")([h, domain])
        logit = keras.layers.Add(name="with_auxiliary")([main, keras.layers.Dense(1, name="auxiliary_logit")(x)])
    else:  # conet
        h = [x] * domains
        for i, u in enumerate(units):
            cross = keras.layers.Dense(u, use_bias=False, name=f"conet_cross_{i}")
            own = [keras.layers.Dense(u, name=f"conet_{d}_{i}")(h[d]) for d in range(domains)]
            h = [keras.layers.Activation("relu", name=f"conet_{d}_{i}_act")(
                keras.layers.Add(name=f"conet_{d}_{i}_sum")([own[d], cross(h[1 - d])])) for d in range(domains)]
        logit = routed(h)
    return keras.layers.Activation("sigmoid", name=OUTPUT)(logit)


def compile_options(training) -> dict:
    """:func:`compile_model`'s keyword arguments from the ``training`` settings (every trainer)."""
    return {"jit_compile": training.jit_compile, "steps_per_execution": training.steps_per_execution,
            "optimizer": training.optimizer}


def compile_model(model: keras.Model, learning_rate: float, *, jit_compile: bool = False,
                  steps_per_execution: int = 1, optimizer: str = "adam") -> keras.Model:
    """``optimizer`` (:func:`ecdctr_pipeline.modeling.optimizers.make`) on the binary
    cross-entropy, no training metric (the loss is the one the trainers watch; AUC and GAUC come
    from evaluation: a streaming AUC in the step cost ~19 % of it); ``jit_compile``: the train step
    XLA-compiled; ``steps_per_execution``: steps per call of the traced function (the trainers take
    all three from ``training.*``)."""
    from ecdctr_pipeline.modeling import optimizers

    model.compile(optimizer=optimizers.make(optimizer, learning_rate), loss="binary_crossentropy",
                  jit_compile=jit_compile, steps_per_execution=steps_per_execution)
    # the optimizer's slots, created now (in the caller's distribution scope) rather than inside
    # the first traced train step: a tf.function that creates variables is traced twice, which
    # doubled the tracing cost of every fit
    model.optimizer.build(model.trainable_variables)
    return model
