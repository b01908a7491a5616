"""What every command shares: its settings and store (loaded once per command) and how it
prints its result (text, or ``--json``; the result is also what ``execute()`` returns, a DAG
step's XCom)."""

from __future__ import annotations

import argparse
import json
import logging
from typing import Any

log = logging.getLogger("ecdctr")


def settings_of(args: argparse.Namespace):
    """The command's settings, loaded once."""
    if getattr(args, "_settings", None) is None:
        from ecdctr_pipeline.core.settings import load_settings

        args._settings = load_settings(args.config)
    return args._settings


def store_of(args: argparse.Namespace):
    """The command's store, opened once and passed to what the command calls."""
    if getattr(args, "_store", None) is None:
        from ecdctr_pipeline.data.store import open_store

        args._store = open_store(settings_of(args).store)
    return args._store


def emit(args: argparse.Namespace, data: Any, text: str) -> None:
    args.result = data  # what execute() returns (the XCom of a DAG step)
    if getattr(args, "json", False):
        print(json.dumps(data, indent=2, default=str))
    else:
        print(text)
