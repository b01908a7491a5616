"""The served version: ``serving/served.json`` (the pointer, with its history) and TF Serving's
``serving/models.config``, rollback, and pruning of old serving versions."""

from __future__ import annotations

import datetime as dt
import json
import re

from ecdctr_pipeline.core import paths
from ecdctr_pipeline.core.errors import EcdctrError
from ecdctr_pipeline.data import artifacts
from ecdctr_pipeline.data.store import ArtifactStore

SERVED_POINTER = "serving/served.json"
MODEL_CONFIG = "serving/models.config"


def read_served(store: ArtifactStore) -> dict:
    try:
        return json.loads(store.get_bytes(SERVED_POINTER))
    except FileNotFoundError:
        return {"version": None, "history": []}


def store_base_path(store: ArtifactStore) -> str:
    """Where the serving versions are in the store, as the store's ``models.config`` names them
    (a plain path on ``file://`` roots). TF Serving builds since 2.7 read no ``s3://`` path:
    a server reads the local copy ``ecdctr serving-sync`` keeps (:mod:`.sync`)."""
    base = store.uri(paths.SERVING_ACTR)
    return base[len("file://"):] if base.startswith("file://") else base


def model_config_text(model_name: str, base_path: str, version: int) -> str:
    """TF Serving's ``models.config`` serving ``version`` of the model under ``base_path`` (the
    store's folder of versions, or the local folder a sync keeps: one text format for both)."""
    return ("model_config_list {\n  config {\n"
            f"    name: \"{model_name}\"\n"
            f"    base_path: \"{base_path}\"\n"
            "    model_platform: \"tensorflow\"\n"
            f"    model_version_policy {{ specific {{ versions: {int(version)} }} }}\n"
            f"    version_labels {{ key: \"stable\" value: {int(version)} }}\n"
            "  }\n}\n")


def config_version(text: str) -> int | None:
    """The version a ``models.config`` written by :func:`model_config_text` serves (None: another text)."""
    m = re.search(r"specific \{ versions: (\d+) \}", text)
    return int(m.group(1)) if m else None


def set_served(store: ArtifactStore, model_name: str, version: int, *, reason: str) -> dict:
    """Point serving at ``version``: the pointer file and TF Serving's ``models.config``."""
    if artifacts.find_manifest(store, paths.serving_version(version)) is None:
        raise EcdctrError(f"serving version {version} is not published at {store.uri(paths.serving_version(version))}")
    state = read_served(store)
    history = [h for h in state.get("history", [])]
    history.append({"version": version, "reason": reason,
                    "at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")})
    state = {"version": version, "history": history[-50:]}
    store.put_bytes(MODEL_CONFIG, model_config_text(model_name, store_base_path(store), version).encode())
    store.put_bytes(SERVED_POINTER, json.dumps(state, indent=2).encode())
    return state


def rollback(store: ArtifactStore, model_name: str) -> dict:
    """Serve the newest published version older than the served one."""
    state = read_served(store)
    current = state.get("version")
    if current is None:
        raise EcdctrError("nothing is served yet: no version to roll back from")
    older = sorted(int(m.artifact_id) for _, m in artifacts.list_artifacts(store, "serving_version")
                   if int(m.artifact_id) < current)
    if not older:
        raise EcdctrError(f"no published serving version older than {current} to roll back to")
    return set_served(store, model_name, older[-1], reason=f"rollback from {current}")


def prune_versions(store: ArtifactStore, keep_versions: int) -> list[int]:
    """Keep the served version and the ``keep_versions - 1`` newest others; delete the rest."""
    served = read_served(store).get("version")
    versions = sorted((int(m.artifact_id) for _, m in artifacts.list_artifacts(store, "serving_version")), reverse=True)
    keep = set(versions[:keep_versions]) | ({served} if served else set())
    removed = [v for v in versions if v not in keep]
    for v in removed:
        store.delete(paths.manifest_key(paths.serving_version(v)))  # invisible first, then the files
        store.delete_prefix(paths.serving_version(v))
    return removed
