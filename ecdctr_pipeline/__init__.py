"""ecdctr: production training pipeline for cross-domain CTR prediction (E-CDCTR).

Modules are imported lazily by the CLI and the DAGs; importing this package is cheap.
"""

__version__ = "0.1.0"
