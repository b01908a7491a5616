"""TPM embedding sets: per-month user and item tables (id → vector Parquet), and the
resolver/loader CPM and A-CTR use.

Set ``M`` (published by the TPM run of month ``M``) holds ``user_<m>.parquet`` and
``item_<m>.parquet`` for its months ``m`` (``M-3 .. M-1``): columns ``id`` (int64, sorted,
unique) and ``vector`` (fixed-size list of float32, the set's dimension).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ecdctr_pipeline.data import artifacts
from ecdctr_pipeline.core import calendar, paths
from ecdctr_pipeline.core.errors import ArtifactMissingError, CorruptArtifactError, EcdctrError
from ecdctr_pipeline.data.store import ArtifactStore

SIDES = ("user", "item")


@dataclass(frozen=True)
class HistoricalTables:
    """The frozen TPM vectors of an embedding set, per side: sorted ids and ``(n, months, d)``."""

    set_id: str
    months: tuple[str, ...]
    user_ids: np.ndarray
    user_vectors: np.ndarray
    item_ids: np.ndarray
    item_vectors: np.ndarray

    @property
    def dim(self) -> int:
        return int(self.user_vectors.shape[-1])

    def last(self, k: int) -> "HistoricalTables":
        """The set restricted to its last ``k`` months (paper Table 5), ids kept where one of those
        months has a vector."""
        if not 0 < k <= len(self.months):
            raise EcdctrError(f"embedding set {self.set_id}: cannot keep the last {k} of its "
                              f"{len(self.months)} months ({', '.join(self.months)})")
        sides = {}
        for side, ids, vectors in (("user", self.user_ids, self.user_vectors), ("item", self.item_ids, self.item_vectors)):
            kept = vectors[:, -k:]
            seen = np.any(kept != 0, axis=(1, 2))
            sides[side] = ids[seen], np.ascontiguousarray(kept[seen])
        return HistoricalTables(f"{self.set_id} (last {k} months)", self.months[-k:], *sides["user"], *sides["item"])


class EmbeddingSetMissing(ArtifactMissingError):
    """The embedding set a plan names is not published."""


def table_name(side: str, month: str) -> str:
    return f"{side}_{month}.parquet"


def write_table(path: Path, ids: np.ndarray, vectors: np.ndarray) -> int:
    ids = np.asarray(ids, np.int64)
    vectors = np.asarray(vectors, np.float32)
    if vectors.ndim != 2 or len(ids) != len(vectors):
        raise ValueError(f"ids {ids.shape} and vectors {vectors.shape} do not match")
    order = np.argsort(ids)
    d = vectors.shape[1]
    vec = pa.FixedSizeListArray.from_arrays(pa.array(vectors[order].ravel(), pa.float32()), d)
    pq.write_table(pa.table({"id": pa.array(ids[order]), "vector": vec}), path)
    return len(ids)


def read_table(data: bytes, where: str, dim: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    t = pq.read_table(io.BytesIO(data))
    if t.column_names != ["id", "vector"]:
        raise CorruptArtifactError(f"{where}: expected columns id, vector; found {', '.join(t.column_names)}")
    ids = np.asarray(t["id"]).astype(np.int64)
    vec_type = t.schema.field("vector").type
    d = vec_type.list_size
    if dim is not None and d != dim:
        raise CorruptArtifactError(f"{where}: vectors have dimension {d}, the manifest says {dim}")
    vectors = np.asarray(t["vector"].combine_chunks().flatten()).reshape(-1, d)
    if len(ids) and np.any(np.diff(ids) <= 0):
        raise CorruptArtifactError(f"{where}: ids are not sorted and unique")
    if not np.all(np.isfinite(vectors)):
        raise CorruptArtifactError(f"{where}: {int((~np.isfinite(vectors)).sum())} non-finite values")
    return ids, vectors


def resolve(store: ArtifactStore, set_id: str, *, consumer: str) -> artifacts.Manifest:
    """The manifest of embedding set ``set_id``; a missing set is an error naming it and its months."""
    m = artifacts.find_manifest(store, paths.tpm_set(set_id))
    if m is None:
        months = None
        try:
            from ecdctr_pipeline.core.settings import CalendarSettings

            months = ", ".join(str(x) for x in calendar.embedding_set_months(calendar.Month.parse(set_id),
                                                                              CalendarSettings()))
        except EcdctrError:
            pass
        raise EmbeddingSetMissing(
            f"{consumer}: embedding set {set_id} (months {months}) is not published at "
            f"{store.uri(paths.tpm_set(set_id))}; run the TPM for {set_id}-01 first")
    return m


def load(store: ArtifactStore, manifest: artifacts.Manifest) -> HistoricalTables:
    """All monthly tables of a set, aligned on the union of ids (zeros where a month lacks an id)."""
    prefix = paths.tpm_set(manifest.artifact_id)
    return assemble(manifest.artifact_id, tuple(manifest.months), int(manifest.params.get("dim", 0)) or None,
                    lambda name: (artifacts.load_bytes(store, prefix, name, manifest), store.uri(prefix) + "/" + name))


def from_files(set_id: str, months: tuple[str, ...], files: dict[str, Path], dim: int) -> HistoricalTables:
    """The tables a TPM run wrote locally (``TrainResult.files``) before, or instead of, publishing."""
    return assemble(set_id, months, dim, lambda name: (files[name].read_bytes(), str(files[name])))


def assemble(set_id: str, months: tuple[str, ...], dim: int | None, read) -> HistoricalTables:
    """The monthly tables ``read(name) -> (bytes, where)`` aligned on the union of ids."""
    out = {}
    for side in SIDES:
        per_month = [read_table(*read(table_name(side, m)), dim) for m in months]
        ids = np.unique(np.concatenate([p[0] for p in per_month]))
        d = per_month[0][1].shape[1]
        vectors = np.zeros((len(ids), len(months), d), np.float32)
        for j, (mid, mvec) in enumerate(per_month):
            vectors[np.searchsorted(ids, mid), j] = mvec
        out[side] = (ids, vectors)
    return HistoricalTables(set_id, months, out["user"][0], out["user"][1], out["item"][0],
                            out["item"][1])
