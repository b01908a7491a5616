"""Freshness: has the raw data an artifact was trained on changed since?

Every trainer records, in its manifest's ``inputs.raw_tables``, the raw tables its features were
extracted from (the version the extraction read, recorded in the feature table's app
transaction: :func:`ecdctr_pipeline.data.extract.built_from`) and a fingerprint of each day the
run's rows depend on (the window and the history before it). A day is *changed* when the raw
table's current files of that day differ from the recorded ones: a corrected day re-ingested, a
late day that arrived. ``ecdctr status`` lists the artifacts whose data changed, the sensors'
``check`` says so, and the next run of that logical date retrains once the features are
re-extracted (:func:`ecdctr_pipeline.tiers.train`), recording both versions.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ecdctr_pipeline.data import delta
from ecdctr_pipeline.data.store import ArtifactStore


@dataclass(frozen=True)
class Change:
    """Raw days an artifact depends on that changed since it was trained."""

    table: str
    recorded_version: int  # the raw version its features were extracted from
    current_version: int | None
    days: tuple[str, ...]

    def describe(self) -> str:
        shown = ", ".join(self.days[:3]) + (f" (+{len(self.days) - 3} more)" if len(self.days) > 3 else "")
        return f"{self.table} {shown} changed since v{self.recorded_version} (now v{self.current_version})"

    def to_dict(self) -> dict:
        return {"table": self.table, "recorded_version": self.recorded_version,
                "current_version": self.current_version, "days": list(self.days)}


@dataclass
class Checker:
    """Compares manifests with the store's current raw tables (each table's snapshot read once)."""

    store: ArtifactStore
    _cache: dict = field(default_factory=dict)

    def _current(self, table: str, days) -> dict[str, str]:
        if table not in self._cache:
            self._cache[table] = (delta.version(self.store, table), {})
        version, fps = self._cache[table]
        missing = [d for d in days if d not in fps]
        if missing:
            fps.update(delta.day_fingerprints(self.store, table, missing))
        return {d: fps[d] for d in days}

    def changes(self, manifest) -> list[Change]:
        out = []
        for table, rec in sorted(manifest.inputs.raw_tables.items()):
            recorded = rec.get("days", {})
            now = self._current(table, list(recorded))
            changed = tuple(sorted(d for d, fp in recorded.items() if now[d] != fp))
            if changed:
                out.append(Change(table, int(rec.get("version", -1)), self._cache[table][0], changed))
        return out


def changes(store: ArtifactStore, manifest) -> list[Change]:
    """The raw days ``manifest``'s artifact depends on that changed since it was trained (empty:
    fresh, or an artifact that recorded no raw inputs)."""
    return Checker(store).changes(manifest)


def describe(changes_: list[Change]) -> str:
    return "; ".join(c.describe() for c in changes_)
