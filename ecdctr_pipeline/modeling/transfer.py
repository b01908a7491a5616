"""CPM → A-CTR weight transfer (paper Table 6).

Variables are matched by path (the complete model's layer names are fixed) and grouped:

* ``batchnorm``  — gamma, beta, moving mean and moving variance of every BatchNormalization;
* ``embedding``  — the id, profile and context embedding tables (``emb_*``);
* ``frozen``     — the TPM tables and id vocabularies of the historical blocks: inputs of the
  embedding set, identical in CPM and A-CTR, always taken over;
* ``mlp``        — every other trained weight: the network above the embeddings (DIN attention,
  historical self-attention, cross network, the MLP's Dense layers, the output head, and any
  variant's extra layers).

The paper's Table 6 splits the network in two, "Embeddings" and "MLP", so that Embeddings ∪
MLP (w/o BN) is E-CDCTR itself; the grouping follows it (until 2026-12-07 DIN, the cross network
and the historical attention were a group of their own that only ``all_but_bn``/``all`` restored).

Policies (``actr.transfer_policy``, paper Table 6), named by what they restore: ``none``
(nothing but the embedding set's frozen inputs: A-CTR trained from random weights with TPM
inputs), ``embeddings``, ``mlp_without_bn`` (everything above the embeddings but BatchNorm;
embeddings stay random), ``all_but_bn`` (default, the paper's choice: everything except
BatchNorm), ``embeddings_and_mlp`` (the same set as ``all_but_bn``, kept as a name existing
settings use) and ``all``. What is not restored keeps the fresh initialisation of the newly
built A-CTR model (BatchNorm: gamma 1, beta 0, mean 0, variance 1).
"""

from __future__ import annotations

import keras

from ecdctr_pipeline.core.errors import EcdctrError
from ecdctr_pipeline.core.settings import TRANSFER_POLICIES

POLICIES: dict[str, frozenset[str]] = {
    "none": frozenset({"frozen"}),
    "embeddings": frozenset({"embedding", "frozen"}),
    "mlp_without_bn": frozenset({"mlp", "frozen"}),
    "embeddings_and_mlp": frozenset({"embedding", "mlp", "frozen"}),
    "all_but_bn": frozenset({"embedding", "mlp", "frozen"}),
    "all": frozenset({"embedding", "mlp", "frozen", "batchnorm"}),
}
assert tuple(POLICIES) == TRANSFER_POLICIES  # the settings' and the CLI's choices


class TransferError(EcdctrError):
    """The CPM checkpoint does not fit the A-CTR network."""


def _layers(model: keras.Model):
    return model._flatten_layers(include_self=False, recursive=True)


def variable_groups(model: keras.Model) -> dict[str, str]:
    """Path of every variable → its group."""
    groups: dict[str, str] = {}
    for layer in _layers(model):
        if isinstance(layer, keras.layers.BatchNormalization):
            for v in layer.weights:
                groups[v.path] = "batchnorm"
    for v in model.weights:
        p = v.path
        if p in groups:
            continue
        top = p.split("/", 1)[0]
        if top.startswith("emb_"):
            groups[p] = "embedding"
        elif top.startswith("hist_") and (p.endswith("/table") or "/lookup/" in p):
            groups[p] = "frozen"
        else:
            groups[p] = "mlp"
    return groups


def warm_start(target: keras.Model, source: keras.Model, policy: str) -> dict:
    """Copy the policy's variables from ``source`` (CPM) into ``target`` (a freshly built A-CTR).

    Returns the warm-start report: every variable restored and every variable left at its
    fresh initialisation, by path, plus the policy.
    """
    if policy not in POLICIES:
        raise TransferError(f"unknown transfer policy {policy!r}: expected one of {', '.join(POLICIES)}")
    keep = POLICIES[policy]
    src = {v.path: v for v in source.weights}
    groups = variable_groups(target)
    restored, reinit = [], []
    for v in target.weights:
        group = groups[v.path]
        if group not in keep:
            reinit.append(v.path)
            continue
        s = src.get(v.path)
        if s is None:
            raise TransferError(f"CPM checkpoint has no variable {v.path} (policy {policy})")
        if tuple(s.shape) != tuple(v.shape):
            raise TransferError(f"variable {v.path}: CPM shape {tuple(s.shape)} != A-CTR shape {tuple(v.shape)}")
        v.assign(s.value)
        restored.append(v.path)
    return {"policy": policy, "restored": restored, "reinitialized": reinit,
            "reinitialized_groups": sorted({groups[p] for p in reinit})}
