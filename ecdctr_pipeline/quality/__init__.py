"""Data quality: Great Expectations suites, the per-tier gates of the DAGs, and alerts. No TensorFlow."""
