"""Applications on top of the pipeline: the ``ecdctr`` entry point (the step verbs plus ``backfill``,
``demo`` and ``experiments``), backfill, the demo and experiments."""
