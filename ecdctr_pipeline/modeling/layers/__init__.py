"""Keras layers of the E-CDCTR models, one per module, registered as ``ecdctr>Name``."""

from ecdctr_pipeline.modeling.layers.cross_network import CrossNetwork
from ecdctr_pipeline.modeling.layers.historical import HistoricalEmbedding, MergedHistoricalEmbedding
from ecdctr_pipeline.modeling.layers.id_lookup import FrozenIdLookup, ModuloHash
from ecdctr_pipeline.modeling.layers.interest import InterestAttention
from ecdctr_pipeline.modeling.layers.mlp_block import MLPBlock
from ecdctr_pipeline.modeling.layers.multi_domain import DomainSelect, ExpertMixture, PartitionedNorm, StarDense
from ecdctr_pipeline.modeling.layers.sequence_mask import SequenceMask
from ecdctr_pipeline.modeling.layers.target_attention import TargetAttention

__all__ = ["CrossNetwork", "DomainSelect", "ExpertMixture", "FrozenIdLookup", "HistoricalEmbedding",
           "InterestAttention", "MLPBlock", "MergedHistoricalEmbedding", "ModuloHash", "PartitionedNorm",
           "SequenceMask", "StarDense", "TargetAttention"]
