"""Loopback helpers for the components this project starts on one machine (the local Airflow
deployment, the benchmarks' worker processes, the tests' servers)."""

from __future__ import annotations

import socket


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
