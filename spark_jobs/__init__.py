"""Spark applications: ``ecdctr_cli.py`` runs the ``ecdctr`` command line under spark-submit."""
