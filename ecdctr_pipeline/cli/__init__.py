"""The ``ecdctr`` verbs that pipeline steps run (extract, train, gate, check, evaluate, export, ...):
one parser and :func:`~ecdctr_pipeline.cli.verbs.execute`, used by pods, in-process DAG tasks and
sensors. The ``ecdctr`` entry point (:mod:`ecdctr_pipeline.app.main`) adds the applications."""
