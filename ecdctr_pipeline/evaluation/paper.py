"""The paper's own figures (E-CDCTR, Liu, Tang et al.: GAUC on the industrial ad test set, each
the mean of 3 runs), keyed by this project's variant names, so every experiments report puts
the paper's figure beside ours. Transcribed from the paper's Tables 2-6; a test checks them
against the design folder's ``paper_results.json`` where that folder is present."""

from __future__ import annotations

# report key -> (the paper's table, {variant: the paper's GAUC})
PAPER: dict[str, tuple[str, dict[str, float]]] = {
    "main": ("Table 2", {"target_only": 0.6564, "ecdctr": 0.6652}),
    "2": ("Table 2", {"target_only": 0.6564, "share_bottom": 0.6577, "conet": 0.6575, "minet": 0.6572,
                      "star": 0.6558, "mmoe": 0.6579, "keep": 0.6582, "ecdctr": 0.6652}),
    "3": ("Table 3", {"target_only": 0.6564, "target_only_tpm": 0.6597, "cpm_without_tpm": 0.6620,
                      "ecdctr": 0.6652}),
    "4": ("Table 4", {"target_only": 0.6564, "source_only": 0.6396, "sample_merging": 0.6560, "ecdctr": 0.6652}),
    "5": ("Table 5", {"cpm_without_tpm": 0.6620, "tpm_months_1": 0.6642, "tpm_months_2": 0.6647, "ecdctr": 0.6652}),
    "6": ("Table 6", {"target_only_tpm": 0.6597, "transfer_embeddings": 0.6621, "transfer_mlp_without_bn": 0.6632,
                      "transfer_all": 0.6645, "ecdctr": 0.6652}),
}

# the names paper_results.json gives the same rows
JSON_NAMES = {
    "Table 2": ("table2_overall", {"target_only": "Target-only", "share_bottom": "Share-Bottom", "conet": "CoNet",
                                   "minet": "MiNet", "star": "Star", "mmoe": "MMoE", "keep": "KEEP",
                                   "ecdctr": "E-CDCTR"}),
    "Table 3": ("table3_components", {"target_only": "Target-only", "target_only_tpm": "+TPM",
                                      "cpm_without_tpm": "+CPM", "ecdctr": "E-CDCTR"}),
    "Table 4": ("table4_source_data", {"target_only": "Target-only", "source_only": "Source-only",
                                       "sample_merging": "Sample Merging", "ecdctr": "E-CDCTR"}),
    "Table 5": ("table5_months", {"cpm_without_tpm": "Target-only+CPM", "tpm_months_1": "One Month",
                                  "tpm_months_2": "Two Months", "ecdctr": "Three Months (E-CDCTR)"}),
    "Table 6": ("table6_cpm_parts", {"target_only_tpm": "Target-only+TPM", "transfer_embeddings": "Embeddings",
                                     "transfer_mlp_without_bn": "MLP (w/o BN)", "transfer_all": "ALL",
                                     "ecdctr": "E-CDCTR"}),
}


def figure(table: str, variant: str) -> float | None:
    """The paper's GAUC of ``variant`` in the report ``table`` (None: the paper has no such row)."""
    return PAPER.get(table, ("", {}))[1].get(variant)


def lift(table: str, a: str, b: str) -> float | None:
    fa, fb = figure(table, a), figure(table, b)
    return None if fa is None or fb is None else fa - fb
