"""Scratch copies of a store's tables for runs that must not publish into it (``replicate``'s
replicates, ``experiments``' training seeds and probe holdouts)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from ecdctr_pipeline.data.store import ArtifactStore

COPIED = ("raw", "features", "empty_days")  # what a replicate reads of the user's store


def copy_inputs(src: ArtifactStore, dest: Path, prefixes: tuple[str, ...] = COPIED) -> None:
    """The user's raw and feature tables into a scratch folder: data files as hard links when both
    are local, Delta logs always copied (a commit in the copy never touches the original)."""
    for prefix in prefixes:
        for key in src.list(prefix):
            target = dest / key
            target.parent.mkdir(parents=True, exist_ok=True)
            if src.is_local and "_delta_log" in key.split("/"):
                shutil.copy2(src.local_path(key), target)
                continue
            if src.is_local:
                try:
                    os.link(src.local_path(key), target)
                    continue
                except OSError:  # another file system: copy
                    shutil.copy2(src.local_path(key), target)
                    continue
            src.download_file(key, target)
