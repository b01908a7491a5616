"""Data: the store adapter (file://, s3://), Delta tables, artifacts with manifests, ingest and the
simulator, Spark feature extraction, and TPM embedding-set tables. No TensorFlow."""
