"""Modeling: Keras layers and models, the shared preprocessing graph, the input pipeline, transfer
(warm start) and the tier-agnostic training API (:class:`~ecdctr_pipeline.modeling.training.TrainArgs`,
:func:`~ecdctr_pipeline.modeling.training.run_training`) and publishing."""
