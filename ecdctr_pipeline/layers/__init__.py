"""Keras layers of the E-CDCTR models, one per module, registered as ``ecdctr>Name``."""

from .cross_network import CrossNetwork
from .historical import HistoricalEmbedding, MergedHistoricalEmbedding
from .id_lookup import FrozenIdLookup, ModuloHash
from .mlp_block import MLPBlock
from .sequence_mask import SequenceMask
from .target_attention import TargetAttention

__all__ = ["CrossNetwork", "FrozenIdLookup", "HistoricalEmbedding", "MLPBlock", "MergedHistoricalEmbedding",
           "ModuloHash", "SequenceMask", "TargetAttention"]
