"""Serving: the TF Serving export (merged historical tables), the served-version pointer, and
clients (in-process, REST, gRPC)."""
