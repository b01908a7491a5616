"""Airflow-facing pieces: task functions (primitives in, small dicts out), sensors, callbacks,
and the production operators. Nothing here imports TensorFlow, Spark or GX at module level."""
