"""The models experiments compare (the paper's Tables 3 to 6 and Figure 4), in one registry.

A variant scores one A-CTR day's holdout with a model trained on that day's windows: the same
ad window, hyper-parameters, epoch budget and early-stopping rule as the A-CTR run
(``training.validation_days``). Week-level models are trained once per CPM Monday by
:func:`prepare_week` and shared by the days of that week:

* ``cpm`` — the published TPM set and CPM (``tiers.train``, as the weekly DAG runs them);
* ``cpm_without_tpm`` — the same network on the same natural window without the TPM inputs;
* ``repretrained`` — the same network without TPM inputs on ``repretrain_months`` months of
  natural data (the efficiency claim's alternative; default ``calendar.tpm_train_months``);
* ``tpm_months_<k>`` — a CPM consuming only the last ``k`` months of the published TPM set
  (Table 5), kept with those tables (``<name>_hist``) for the A-CTR run that fine-tunes it;
* ``tpm_dim_<d>`` — a TPM trained with embedding dimension ``d`` (never published), and a CPM
  consuming its tables (Figure 4);
* ``month_positions`` — a CPM whose historical block adds learned month positions
  (``cpm.hist_month_positions``), an ablation beside Table 5.

``natural`` is not a model: a variant that needs it reads the Monday's natural features
(Sample merging); nor is :data:`SOURCE_SEQUENCE` (MiNet's second sequence in the ad features).
Each variant returns ``(labels, scores, users, info)``: the holdout's rows in its stream order
(so two variants of one day can be compared pair by pair) and what training recorded
(``rows``, ``epochs_run`` with early stopping; empty for Source-only, which is not trained).
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from typing import Any, Callable

from ecdctr_pipeline.core.errors import EcdctrError
from ecdctr_pipeline.core.settings import Settings
from ecdctr_pipeline.data.store import ArtifactStore


class VariantError(EcdctrError):
    """An unknown variant, or a week that lacks what a variant needs."""


@dataclass(frozen=True)
class Variant:
    name: str
    label: str  # as the paper's tables name it
    needs: frozenset[str]  # week-level models (see the module docstring)
    score: Callable[..., tuple[Any, Any, Any, dict]] = field(repr=False)  # (settings, store, day, week)
    what: str = ""  # one line: how it is trained
    # not trained: ``experiments`` derives its scores from this variant's (the instrument's planted effect)
    derived_from: str | None = None


def _fine_tuned(policy: str | None):
    def score(settings, store, day, week):
        from ecdctr_pipeline.tiers.baselines import fine_tuned

        return fine_tuned(settings, store, day, policy=policy, published=week.get("cpm_loaded"))
    return score


def _target_only(settings, store, day, week):
    from ecdctr_pipeline.tiers.baselines import target_only_scores

    return target_only_scores(settings, store, day)


AA_SEED_OFFSET = 1000  # the A/A variant's training seed: the A-CTR seed plus this


def _target_only_reseeded(settings, store, day, week):
    from ecdctr_pipeline.tiers.baselines import target_only_scores

    s = settings.model_copy(deep=True)
    s.actr.seed += AA_SEED_OFFSET
    return target_only_scores(s, store, day)


def _derived(settings, store, day, week):
    raise VariantError("planted: its scores are derived by experiments from Target-only's and the simulated "
                       "world's true click probabilities; it is not trained")


def _from_week_model(key: str):
    def score(settings, store, day, week):
        from ecdctr_pipeline.tiers.baselines import fine_tuned

        return fine_tuned(settings, store, day, base=week[key])
    return score


def _from_week_model_with_tables(key: str, cpm_overrides: dict | None = None):
    def score(settings, store, day, week):
        from ecdctr_pipeline.tiers.baselines import fine_tuned

        return fine_tuned(with_cpm(settings, cpm_overrides), store, day, base=week[key], historical=week[f"{key}_hist"])
    return score


def with_cpm(settings: Settings, overrides: dict | None) -> Settings:
    """``settings`` with the complete network's settings ``overrides`` (a variant's architecture)."""
    if not overrides:
        return settings
    s = settings.model_copy(deep=True)
    s.cpm = s.cpm.model_validate({**s.cpm.model_dump(), **overrides})
    return s


def _source_only(settings, store, day, week):
    from ecdctr_pipeline.tiers.baselines import source_only_scores

    return source_only_scores(settings, store, day, model=week["cpm_without_tpm"])


def _joint(head: str | None):
    def score(settings, store, day, week):
        from ecdctr_pipeline.tiers.baselines import joint_training_scores

        return joint_training_scores(settings, store, day, head=head)
    return score


def _minet(settings, store, day, week):
    from ecdctr_pipeline.tiers.baselines import target_only_scores

    return target_only_scores(settings, store, day, source_sequence=True)


def _keep(settings, store, day, week):
    from ecdctr_pipeline.tiers.baselines import target_only_scores

    return target_only_scores(with_cpm(settings, KEEP_PLUG), store, day, historical=week["keep_tpm"])


_POLICY_TEXT = {  # the transfer policies that are not a variant of their own
    "embeddings": "embeddings from the CPM; MLP, attention, cross network and BatchNorm fresh",
    "mlp_without_bn": "everything above the embeddings from the CPM (attention, cross network, MLP, head) but "
                      "BatchNorm; embeddings random, BatchNorm fresh",
    "embeddings_and_mlp": "embeddings and everything above them from the CPM, BatchNorm fresh (the same set "
                          "as E-CDCTR's all_but_bn)",
    "all": "everything from the CPM, BatchNorm statistics included",
}


def _registry() -> dict[str, Variant]:
    from ecdctr_pipeline.core.settings import TRANSFER_POLICIES

    v = [
        Variant("target_only", "Target-only", frozenset(), _target_only,
                "the complete network without TPM inputs, random init, trained on the ad window"),
        # the instrument's own check (issue 31): the same training under another seed (A/A), and
        # Target-only given a known fraction of the true click logit (a planted effect)
        Variant("target_only_reseeded", "Target-only, another training seed", frozenset(), _target_only_reseeded,
                f"Target-only trained again with the A-CTR seed + {AA_SEED_OFFSET} (an A/A comparison)"),
        Variant("planted", "Target-only + planted true logit", frozenset(), _derived,
                "Target-only's scores plus experiments' --planted x the simulator's true click logit (not trained)",
                derived_from="target_only"),
        Variant("ecdctr", "E-CDCTR", frozenset({"cpm"}), _fine_tuned("all_but_bn"),
                "A-CTR: TPM inputs, initialised from the CPM except BatchNorm, fine-tuned on the ad window"),
        Variant("target_only_tpm", "Target-only + TPM", frozenset({"cpm"}), _fine_tuned("none"),
                "TPM inputs (the CPM's embedding set), no CPM initialisation"),
        Variant("cpm_without_tpm", "Target-only + CPM (without TPM)", frozenset({"cpm_without_tpm"}),
                _from_week_model("cpm_without_tpm"),
                "a CPM trained without TPM inputs, then fine-tuned like A-CTR (no TPM inputs)"),
        Variant("repretrained", "re-pretrained complete model → A-CTR", frozenset({"repretrained"}),
                _from_week_model("repretrained"),
                "the complete network without TPM inputs re-pretrained on months of natural data, then "
                "fine-tuned like A-CTR"),
        Variant("source_only", "Source-only", frozenset({"cpm_without_tpm"}), _source_only,
                "the complete network without TPM inputs trained on the CPM's natural window only, scored on "
                "the ad holdout, no fine-tuning"),
        Variant("sample_merging", "Sample merging", frozenset({"natural"}), _joint(None),
                "the complete network without TPM inputs on the CPM window's natural rows and the ad window's "
                "rows mixed (no domain input)"),
    ]
    # Table 2's multi-domain models: trained like Sample merging, with a head that routes by domain
    v += [Variant(head, label, frozenset({"natural"}), _joint(head), what) for head, label, what in MULTI_DOMAIN]
    v.append(Variant("minet", "MiNet", frozenset({SOURCE_SEQUENCE}), _minet,
                     "the complete network without TPM inputs plus the ad rows' natural clicks as a second sequence "
                     "(its own attention, the candidate mapped by a transfer matrix) and MiNet's interest-level "
                     "attention over user, source and target interests; random init, trained on the ad window"))
    v.append(Variant("keep", "KEEP-style", frozenset({"keep_tpm"}), _keep,
                     f"a TPM pre-trained on the {KEEP_MONTHS} months of natural data before the set's month (§4.4), "
                     "its last month's user and item embeddings plugged beside the complete network's last MLP "
                     "layer (frozen tables), every other weight random, trained on the ad window; no CPM"))
    # the other transfer policies of Table 6 (``none`` is target_only_tpm, ``all_but_bn`` is ecdctr)
    v += [Variant(f"transfer_{p}", f"transfer: {p}", frozenset({"cpm"}), _fine_tuned(p), _POLICY_TEXT[p])
          for p in TRANSFER_POLICIES if p not in ("none", "all_but_bn")]
    # Table 5: how many of the set's months CPM and A-CTR consume (0 is cpm_without_tpm, all is ecdctr)
    v += [Variant(f"tpm_months_{k}", f"TPM months: last {k}", frozenset({"cpm", f"tpm_months_{k}"}),
                  _from_week_model_with_tables(f"tpm_months_{k}"),
                  f"a CPM consuming the last {k} month(s) of the TPM set, then fine-tuned like A-CTR")
          for k in TPM_MONTHS]
    # Figure 4: the TPM's embedding dimension (the tiny model's width; CPM and A-CTR unchanged)
    v += [Variant(f"tpm_dim_{d}", f"TPM dim {d}", frozenset({f"tpm_dim_{d}"}), _from_week_model_with_tables(f"tpm_dim_{d}"),
                  f"TPM retrained with {d}-dimensional embeddings, a CPM consuming them, then fine-tuned like A-CTR")
          for d in TPM_DIMS]
    # the historical block's optional month positions (an ablation beside Table 5)
    v.append(Variant("month_positions", "E-CDCTR + month positions", frozenset({"cpm", "month_positions"}),
                     _from_week_model_with_tables("month_positions", cpm_overrides=MONTH_POSITIONS),
                     "a CPM whose historical block adds a learned vector per month position, then fine-tuned "
                     "like A-CTR with the same block"))
    return {x.name: x for x in v}


MULTI_DOMAIN = (  # (head, label, how); the heads are modeling.models.MULTI_DOMAIN_HEADS
    ("share_bottom", "Share-Bottom", "shared embeddings (and DIN attention), a cross network and whole MLP per domain, "
                                     "on natural + ad rows"),
    ("mmoe", "MMoE", "shared embeddings, 4 expert MLPs mixed by a gate per domain, one tower per domain"),
    ("star", "STAR", "partitioned normalisation, star-topology MLP (shared x per-domain weights), auxiliary "
                     "network on the domain indicator"),
    ("conet", "CoNet", "one MLP per domain with cross connections between them, shared embeddings"),
)
MONTH_POSITIONS = {"hist_month_positions": True}
KEEP_MONTHS = 7  # §4.4: KEEP pre-trains on seven months of the source domain
KEEP_PLUG = {"hist_plug": "last_mlp"}  # ... and plugs the knowledge in at the last MLP layer
# not a model: the ad features must carry the natural clicks as a sequence of their own
# (``features.ad_history: split``; see :func:`with_needed_features`)
SOURCE_SEQUENCE = "ad_source_sequence"
TPM_MONTHS = (1, 2)  # Table 5's rows besides 0 (cpm_without_tpm) and all 3 (ecdctr)
TPM_DIMS = (4, 8, 16, 32, 64)  # Figure 4's points
REGISTRY: dict[str, Variant] = _registry()


def get(name: str) -> Variant:
    if name not in REGISTRY:
        raise VariantError(f"unknown variant {name!r}: expected one of {', '.join(REGISTRY)}")
    return REGISTRY[name]


def with_needed_features(settings: Settings, needs: set[str]) -> Settings:
    """``settings`` under which the ad features serve every variant that ``needs`` them: ``split``
    when a variant needs :data:`SOURCE_SEQUENCE` and the settings say ``ad`` (``split`` adds the
    source sequence beside the same ad sequences, so the other variants read identical inputs)."""
    if SOURCE_SEQUENCE not in needs or settings.features.ad_history == "split":
        return settings
    if settings.features.ad_history != "ad":
        raise VariantError(f"MiNet needs the ad rows' own and natural clicks as two sequences: features.ad_history "
                           f"split or ad (got {settings.features.ad_history})")
    s = settings.model_copy(deep=True)
    s.features.ad_history = "split"
    return s


def prepare_week(settings: Settings, store: ArtifactStore, monday: dt.date, needs: set[str], *,
                 repretrain_months: int | None = None) -> dict:
    """Train the week-level models ``needs`` for CPM Monday ``monday`` (features extracted).
    Returns them by name, plus what their training recorded under ``<name>_info``."""
    from ecdctr_pipeline import tiers
    from ecdctr_pipeline.core import calendar
    from ecdctr_pipeline.core import paths
    from ecdctr_pipeline.data import artifacts, embedding_sets
    from ecdctr_pipeline.modeling.training import load_model
    from ecdctr_pipeline.tiers.baselines import cpm_variant, tpm_variant

    unknown = {n for n in needs if not _WEEK_MODEL.fullmatch(n)}
    if unknown:
        raise VariantError(f"unknown week-level model(s) {sorted(unknown)}")
    p = calendar.cpm_plan(monday, settings.calendar)
    week: dict[str, Any] = {}
    if "cpm" in needs:
        week["tpm_info"] = tiers.train("tpm", settings, store, p.embedding_set)
        week["cpm_info"] = tiers.train("cpm", settings, store, monday)
        # loaded once for the week's variants that start from it (as each A-CTR run would load it)
        cpm_manifest = artifacts.read_manifest(store, paths.cpm_checkpoint(monday))
        set_manifest = embedding_sets.resolve(store, cpm_manifest.inputs.embedding_set, consumer=f"variants {monday}")
        week["cpm_loaded"] = (load_model(store, paths.cpm_checkpoint(monday), cpm_manifest),
                              embedding_sets.load(store, set_manifest), monday)
    if "keep_tpm" in needs:  # KEEP-style's knowledge: a TPM over KEEP_MONTHS months, its last month's tables
        week["keep_tpm"], secs = tpm_variant(settings, store, p.embedding_set, dim=settings.tpm.embedding_dim,
                                             months=KEEP_MONTHS)
        week["keep_tpm_info"] = {"tpm_train_seconds": secs, "months": KEEP_MONTHS}
    # "natural": the Monday's natural features only; SOURCE_SEQUENCE: the ad features' columns
    for name in sorted(needs - {"cpm", "natural", "keep_tpm", SOURCE_SEQUENCE}):
        kw: dict[str, Any] = {}
        info: dict[str, Any] = {}
        if name == "cpm_without_tpm":
            kw = {"tpm": False}
        elif name == "repretrained":
            kw = {"tpm": False, "months": repretrain_months or settings.calendar.tpm_train_months}
            info["months"] = kw["months"]
        elif name == "month_positions":
            kw = {"historical": week["cpm_loaded"][1]}
        elif name.startswith("tpm_months_"):
            k = int(name.rsplit("_", 1)[1])
            kw = {"historical": week["cpm_loaded"][1].last(k)}
        else:  # tpm_dim_<d>
            d = int(name.rsplit("_", 1)[1])
            kw["historical"], info["tpm_train_seconds"] = tpm_variant(settings, store, p.embedding_set, dim=d)
        model, metrics, _, rows = cpm_variant(with_cpm(settings, MONTH_POSITIONS if name == "month_positions" else None),
                                              store, monday, **kw)
        week[name], week[f"{name}_info"] = model, {"metrics": metrics, "rows": rows, **info}
        if "historical" in kw:
            week[f"{name}_hist"] = kw["historical"]
    return week


_WEEK_MODEL = re.compile(rf"{SOURCE_SEQUENCE}|natural|cpm|keep_tpm|cpm_without_tpm|repretrained|month_positions|tpm_months_[1-9][0-9]*|tpm_dim_[1-9][0-9]*")
