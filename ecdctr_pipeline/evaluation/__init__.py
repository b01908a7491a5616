"""Evaluation: CTR metrics (AUC, GAUC, log loss), the blessing gate with its typed record, and
comparisons with the Target-only baseline."""
