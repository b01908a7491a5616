"""Spark job entry points: each file is ``main(argv)``, usable with ``spark-submit FILE ARGS``."""
