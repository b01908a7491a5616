"""Artifacts: manifests with lineage, atomic publish, verified load.

Publishing writes every file under a fresh ``<attempt>`` sub-folder of the artifact, then
``MANIFEST.json`` last (one atomic object write). The manifest is the only way in: an
artifact without one is absent to every reader, and every file is checked against the
size and SHA-256 the manifest records when it is loaded.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import hashlib
import json
import logging
import os
import subprocess
import uuid
from pathlib import Path
from typing import Any, Callable, Literal, Mapping

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ecdctr_pipeline import __version__
from ecdctr_pipeline.core import paths
from ecdctr_pipeline.core.errors import ArtifactMissingError, CorruptArtifactError, EcdctrError
from ecdctr_pipeline.data.store import ArtifactStore

log = logging.getLogger(__name__)

Kind = Literal["tpm_embedding_set", "cpm_checkpoint", "actr_model", "serving_version"]


class FileEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str  # logical name inside the artifact (e.g. "user_2026-07.parquet", "model/variables/...")
    key: str  # key relative to the artifact prefix ("<attempt>/<name>")
    size: int
    sha256: str


class Inputs(BaseModel):
    """Exactly what an artifact consumed: follow these to answer "which TPM months and which
    CPM produced today's model"."""

    model_config = ConfigDict(extra="forbid")
    delta_tables: dict[str, int] = Field(default_factory=dict)  # table key -> version read
    embedding_set: str | None = None  # TPM set id, "YYYY-MM"
    embedding_months: list[str] = Field(default_factory=list)
    cpm_checkpoint: str | None = None  # CPM Monday "YYYY-MM-DD"
    actr_model: str | None = None  # A-CTR day "YYYY-MM-DD"
    actr_attempt: str | None = None  # serving versions: the A-CTR model's publish attempt exported
    # the raw data the features came from: raw table -> {"version": N, "days": {dt: fingerprint}}
    # for every day the run's rows depend on (:mod:`ecdctr_pipeline.data.freshness`)
    raw_tables: dict[str, dict[str, Any]] = Field(default_factory=dict)


class Baseline(BaseModel):
    """The model a candidate was compared with (the served A-CTR model), scored on the same holdout."""

    model_config = ConfigDict(extra="forbid")
    model: str  # A-CTR day "YYYY-MM-DD"
    gauc: float | None = None  # None when it could not be scored on this holdout
    error: str | None = None


class Blessing(BaseModel):
    """The blessing gate's verdict on an A-CTR model (written by :mod:`ecdctr_pipeline.evaluation.blessing`)."""

    model_config = ConfigDict(extra="forbid")
    blessed: bool
    candidate_gauc: float | None
    baseline: Baseline | None = None  # None: nothing was served yet
    tolerance: float
    min_gauc: float | None = None  # the absolute floor it was judged against (None: before the floor existed)
    holdout: dict[str, str] | None = None  # the window it was judged on, half-open
    not_evaluable: str | None = None  # why the holdout could not judge the model (then never blessed)
    # actr.bless_requires_target_only: the Target-only model of the same window on the same
    # holdout (model "target-only"), and the margin the candidate had to stay within
    target_only: Baseline | None = None
    target_only_margin: float | None = None
    # `ecdctr promote`: an operator's forced blessing {by, reason, at, verdict} (the gate's own
    # verdict kept beside it); None: the gate decided
    promoted: dict[str, str] | None = None

    def describe(self) -> str:
        if self.promoted:
            p = self.promoted
            return f"PROMOTED by {p['by']} at {p['at']} ({p['reason']}); the gate said: {p['verdict']}"
        if self.not_evaluable:
            return f"NOT EVALUABLE: {self.not_evaluable}; not blessed, the served model stays"
        base = f"served model {self.baseline.model} GAUC {self.baseline.gauc}" if self.baseline else "no served model"
        text = (f"{'BLESSED' if self.blessed else 'REJECTED'}: GAUC {self.candidate_gauc} vs {base} "
                f"(tolerance {self.tolerance}")
        if self.min_gauc is not None:
            below = self.candidate_gauc is not None and self.candidate_gauc < self.min_gauc
            text += f"; {'BELOW ' if below else ''}floor actr.min_gauc {self.min_gauc}"
        text += ")"
        if self.target_only is not None:
            text += (f" and vs Target-only GAUC {self.target_only.gauc} (margin {self.target_only_margin}"
                     + (f"; {self.target_only.error}" if self.target_only.error else "") + ")")
        return text


class Manifest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    schema_version: int = 2
    kind: Kind
    artifact_id: str  # "2026-10" for a set, "2026-11-23" for a checkpoint/model, "7" for a version
    logical_date: str
    data_window: dict[str, str] | None = None  # {"start":..., "end":...}, half-open
    months: list[str] = Field(default_factory=list)  # months the artifact covers/was trained on
    inputs: Inputs = Field(default_factory=Inputs)
    row_counts: dict[str, int] = Field(default_factory=dict)
    metrics: dict[str, Any] = Field(default_factory=dict)
    params: dict[str, Any] = Field(default_factory=dict)
    blessing: Blessing | None = None  # A-CTR models only
    # the feature schema the artifact was built under ({name, version, fingerprint}; None: built
    # before schemas were recorded, i.e. under the default contract)
    feature_schema: dict[str, Any] | None = None
    extra: dict[str, Any] = Field(default_factory=dict)
    code_version: str = ""
    run_id: str | None = None
    created_at: str = ""
    attempt: str = ""
    files: list[FileEntry] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _upgrade(cls, data: Any) -> Any:
        """Schema 1 kept the blessing untyped in ``extra``; read it into :class:`Blessing`."""
        if isinstance(data, dict) and data.get("schema_version", 1) == 1 and "blessed" in data.get("extra", {}):
            extra = dict(data["extra"])
            gate = extra.pop("gate", None) or {}
            blessed = extra.pop("blessed")
            data = {**data, "schema_version": 2, "extra": extra, "blessing": {
                "blessed": bool(blessed), "candidate_gauc": gate.get("candidate_gauc"),
                "baseline": gate.get("baseline"), "tolerance": gate.get("tolerance", 0.0)}}
        return data

    @property
    def blessed(self) -> bool:
        """True only for an A-CTR model its gate blessed."""
        return bool(self.blessing and self.blessing.blessed)

    def file(self, name: str) -> FileEntry:
        for f in self.files:
            if f.name == name:
                return f
        raise ArtifactMissingError(
            f"{self.kind} {self.artifact_id} has no file {name!r} (has: "
            f"{', '.join(f.name for f in self.files[:8]) or 'none'})"
        )

    def to_json(self) -> bytes:
        return json.dumps(self.model_dump(mode="json"), indent=2, sort_keys=False).encode()


@functools.lru_cache(maxsize=1)
def code_version() -> str:
    """Package version plus the git commit when running from a checkout (or ECDCTR_CODE_VERSION)."""
    env = os.environ.get("ECDCTR_CODE_VERSION")
    if env:
        return env
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()
        return f"{__version__}+g{sha}" if sha else __version__
    except (OSError, subprocess.SubprocessError):
        return __version__


def _sha256_file(path: Path) -> tuple[str, int]:
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
            size += len(chunk)
    return h.hexdigest(), size


def new_attempt_id(now: dt.datetime | None = None) -> str:
    now = now or dt.datetime.now(dt.timezone.utc)
    return f"a-{now:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"


Source = Path | str | bytes


def _expand(files: Mapping[str, Source]) -> list[tuple[str, Path | bytes]]:
    """Flatten {name: file | folder | bytes} into (name, file-or-bytes) pairs; folders recursively."""
    out: list[tuple[str, Path | bytes]] = []
    for name, src in files.items():
        if isinstance(src, bytes):
            out.append((name, src))
            continue
        p = Path(src)
        if p.is_dir():
            for f in sorted(x for x in p.rglob("*") if x.is_file()):
                out.append((f"{name}/{f.relative_to(p).as_posix()}", f))
        elif p.is_file():
            out.append((name, p))
        else:
            raise FileNotFoundError(f"cannot publish {name!r}: {p} does not exist")
    return out


def publish(
    store: ArtifactStore,
    prefix: str,
    files: Mapping[str, Source],
    manifest: Manifest,
    *,
    on_file: Callable[[str], None] | None = None,
    flat: bool = False,
    last: tuple[str, ...] = (),
) -> Manifest:
    """Publish ``files`` under ``prefix`` atomically, the manifest last.

    Returns the manifest as written (with file entries, attempt id, code version).
    Older attempts of the same artifact are removed only after the new manifest is in
    place, so a reader holding the previous manifest never sees a mix.

    ``flat=True`` writes the files directly under ``prefix`` (no attempt folder) for readers
    that need a fixed layout, such as TF Serving's ``<model>/<version>/saved_model.pb``; it
    is for artifacts that are never overwritten (a new serving version gets a new number).
    Names in ``last`` are written after all others (e.g. ``saved_model.pb``, which TF Serving
    polls for), just before the manifest.

    One publisher of an artifact at a time: the publish holds the artifact's lease
    (``leases/<prefix>.json``, :func:`~ecdctr_pipeline.data.leases.hold`) from its first file to
    the clean-up of replaced attempts, so a clean-up never removes another writer's attempt
    while it uploads; a second concurrent publisher fails at once (:class:`ArtifactBusyError`,
    naming the holder) and leaves the artifact as the first one publishes it.
    """
    from ecdctr_pipeline.data import leases

    def busy(holder: str) -> Exception:
        return ArtifactBusyError(f"{store.uri(prefix)} is being published by {holder}; nothing was published "
                                 "by this run: retry when it is done")

    with leases.hold(store, paths.writer_lease(prefix), owner=f"publish {manifest.kind} {manifest.artifact_id}",
                     ttl_s=PUBLISH_LEASE_S, busy=busy):
        return _publish(store, prefix, files, manifest, on_file=on_file, flat=flat, last=last)


PUBLISH_LEASE_S = 90  # renewed every 30 s while a publish runs; a killed publisher's lease expires after it


# the DAG run a step runs for ("{{ run_id }}" in every step's environment: airflow_support,
# containers); `ecdctr backfill` sets its own; recorded as Manifest.run_id
ENV_RUN_ID = "ECDCTR_RUN_ID"


@contextlib.contextmanager
def run_id_env(run_id: str | None):
    """While the block runs, manifests published by this process name ``run_id`` (None: leave
    the environment as it is); the previous value is restored after."""
    before = os.environ.get(ENV_RUN_ID)
    if run_id:
        os.environ[ENV_RUN_ID] = run_id
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(ENV_RUN_ID, None)
        else:
            os.environ[ENV_RUN_ID] = before


class ArtifactBusyError(EcdctrError):
    """Another process is publishing the same artifact."""


def _publish(store: ArtifactStore, prefix: str, files: Mapping[str, Source], manifest: Manifest, *,
             on_file, flat: bool, last: tuple[str, ...]) -> Manifest:
    attempt = new_attempt_id()
    if flat and find_manifest(store, prefix) is not None:
        raise ArtifactExistsError(f"{store.uri(prefix)} is already published; flat artifacts are never overwritten")
    entries: list[FileEntry] = []
    ordered = sorted(_expand(files), key=lambda nf: nf[0] in last)
    for name, src in ordered:
        key = name if flat else f"{attempt}/{name}"
        full = f"{prefix.rstrip('/')}/{key}"
        if isinstance(src, bytes):
            store.put_bytes(full, src)
            entries.append(FileEntry(name=name, key=key, size=len(src), sha256=hashlib.sha256(src).hexdigest()))
        else:
            digest, size = _sha256_file(src)
            store.upload_file(src, full)
            entries.append(FileEntry(name=name, key=key, size=size, sha256=digest))
        if on_file:
            on_file(name)
    final = manifest.model_copy(
        update={
            "files": entries,
            "attempt": attempt,
            "code_version": manifest.code_version or code_version(),
            # the Airflow DAG run (or backfill) that published it: set by the operator of every step
            "run_id": manifest.run_id or os.environ.get(ENV_RUN_ID) or None,
            "created_at": manifest.created_at
            or dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        }
    )
    store.put_bytes(paths.manifest_key(prefix), final.to_json())
    if not flat:  # published: a failing clean-up (a store gone away) must not fail the command
        try:
            garbage_collect(store, prefix, keep=attempt)
        except Exception as exc:  # noqa: BLE001 - the next publish collects what is left
            log.warning("published %s; removing replaced attempts failed (%s): the next publish collects them",
                        store.uri(prefix), " ".join(str(exc).split())[:200])
    return final


class ArtifactExistsError(EcdctrError):
    """A flat artifact (a serving version) that is already published."""


def garbage_collect(store: ArtifactStore, prefix: str, *, keep: str) -> int:
    """Remove attempt folders of ``prefix`` other than ``keep`` (crashed or replaced writes)."""
    removed = 0
    for child in list(store.iter_children(prefix)):
        if child != keep and child.startswith("a-"):
            removed += store.delete_prefix(f"{prefix.rstrip('/')}/{child}")
    return removed


def find_manifest(store: ArtifactStore, prefix: str) -> Manifest | None:
    """The artifact's manifest, or None when it is absent (no manifest yet)."""
    key = paths.manifest_key(prefix)
    try:
        raw = store.get_bytes(key)
    except FileNotFoundError:
        return None
    try:
        return Manifest.model_validate_json(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise CorruptArtifactError(f"invalid manifest {store.uri(key)}: {where}: {first['msg']}") from None


def require_schema(manifest: Manifest, schema, *, who: str) -> None:
    """Refuse an artifact built under another feature schema than ``schema``
    (:class:`~ecdctr_pipeline.core.schema.SchemaMismatchError`, naming both versions)."""
    from ecdctr_pipeline.core.schema import SchemaIdentity

    recorded = SchemaIdentity.from_dict(manifest.feature_schema) if manifest.feature_schema else None
    schema.require(recorded, f"{who}: {manifest.kind} {manifest.artifact_id}")


def amend_manifest(store: ArtifactStore, prefix: str, update: Callable[[Manifest], Manifest], *, owner: str) -> Manifest:
    """Rewrite a published artifact's manifest (same files, same attempt) with ``update(manifest)``,
    holding the artifact's publish lease: one object write, so a reader sees the old manifest or
    the new one. For records an operator adds after the fact (``ecdctr promote``)."""
    from ecdctr_pipeline.data import leases

    def busy(holder: str) -> Exception:
        return ArtifactBusyError(f"{store.uri(prefix)} is being published by {holder}; nothing was changed")

    with leases.hold(store, paths.writer_lease(prefix), owner=owner, ttl_s=PUBLISH_LEASE_S, busy=busy):
        old = read_manifest(store, prefix)
        new = update(old)
        if (new.files, new.attempt) != (old.files, old.attempt):
            raise ValueError("amend_manifest changes records, never the files or the attempt")
        store.put_bytes(paths.manifest_key(prefix), new.to_json())
        return new


def read_manifest(store: ArtifactStore, prefix: str) -> Manifest:
    m = find_manifest(store, prefix)
    if m is None:
        raise ArtifactMissingError(f"artifact not found (no {paths.MANIFEST}): {store.uri(prefix)}")
    return m


def load_bytes(store: ArtifactStore, prefix: str, name: str, manifest: Manifest | None = None) -> bytes:
    """One file of an artifact, verified against its manifest."""
    manifest = manifest or read_manifest(store, prefix)
    entry = manifest.file(name)
    key = f"{prefix.rstrip('/')}/{entry.key}"
    try:
        data = store.get_bytes(key)
    except FileNotFoundError:
        raise CorruptArtifactError(f"file listed in manifest is missing: {store.uri(key)}") from None
    _verify(store.uri(key), entry, hashlib.sha256(data).hexdigest(), len(data))
    return data


def fetch(store: ArtifactStore, prefix: str, dest: Path, manifest: Manifest | None = None) -> tuple[Manifest, Path]:
    """Download every file of an artifact to ``dest`` (names as published), verifying each."""
    manifest = manifest or read_manifest(store, prefix)
    dest = Path(dest)
    for entry in manifest.files:
        key = f"{prefix.rstrip('/')}/{entry.key}"
        local = dest / entry.name
        try:
            store.download_file(key, local)
        except FileNotFoundError:
            raise CorruptArtifactError(f"file listed in manifest is missing: {store.uri(key)}") from None
        digest, size = _sha256_file(local)
        _verify(store.uri(key), entry, digest, size)
    return manifest, dest


def _verify(uri: str, entry: FileEntry, digest: str, size: int) -> None:
    if size != entry.size:
        raise CorruptArtifactError(f"size mismatch in {uri}: manifest says {entry.size} bytes, found {size}")
    if digest != entry.sha256:
        raise CorruptArtifactError(f"checksum mismatch in {uri}: file differs from its manifest")


def verify(store: ArtifactStore, prefix: str) -> Manifest:
    """Check every file of an artifact against its manifest without keeping the data."""
    manifest = read_manifest(store, prefix)
    for entry in manifest.files:
        load_bytes(store, prefix, entry.name, manifest)
    return manifest


def list_artifacts(store: ArtifactStore, kind: str | None = None, *,
                   corrupt: list[tuple[str, str]] | None = None) -> list[tuple[str, Manifest]]:
    """(prefix, manifest) of every *published* artifact, by kind then id. An unreadable manifest
    raises :class:`CorruptArtifactError`, or, given a ``corrupt`` list, is appended to it as
    ``(prefix, error)`` and skipped (``ecdctr status`` reports it instead of failing)."""
    out: list[tuple[str, Manifest]] = []
    for k, (base, _pattern) in paths.ARTIFACT_KINDS.items():
        if kind and k != kind:
            continue
        for key in store.list(base + "/"):
            if not key.endswith("/" + paths.MANIFEST):
                continue
            prefix = key[: -len(paths.MANIFEST) - 1]
            if paths.kind_of(prefix) != k:
                continue
            try:
                m = find_manifest(store, prefix)
            except CorruptArtifactError as exc:
                if corrupt is None:
                    raise
                corrupt.append((prefix, str(exc)))
                continue
            if m is not None:
                out.append((prefix, m))
    return out


def lineage(m: Manifest) -> dict[str, Any]:
    """The lineage fields of a manifest, as shown by ``ecdctr status``."""
    return {
        "kind": m.kind,
        "id": m.artifact_id,
        "logical_date": m.logical_date,
        "window": m.data_window,
        "months": m.months,
        "embedding_set": m.inputs.embedding_set,
        "embedding_months": m.inputs.embedding_months,
        "cpm_checkpoint": m.inputs.cpm_checkpoint,
        "actr_model": m.inputs.actr_model,
        "delta_tables": m.inputs.delta_tables,
        "raw_versions": {t: r.get("version") for t, r in m.inputs.raw_tables.items()},
        "attempt": m.attempt,
        "actr_attempt": m.inputs.actr_attempt,
        "metrics": m.metrics,
        "code_version": m.code_version,
        "created_at": m.created_at,
        "files": len(m.files),
    } | input_labels(m)


def input_labels(m: Manifest) -> dict[str, str | None]:
    """How ``status`` and the backfill table name what an artifact was built from: the TPM
    embedding set with its months, and the CPM checkpoint an A-CTR day started from, marked
    "(fallback)" when the week's was late and the previous week's was used."""
    fallback = bool((m.extra.get("cpm_choice") or {}).get("fallback"))
    return {
        "embedding_set_label": (m.inputs.embedding_set
                                and f"{m.inputs.embedding_set} ({', '.join(m.inputs.embedding_months)})"),
        "cpm_label": m.inputs.cpm_checkpoint and m.inputs.cpm_checkpoint + (" (fallback)" if fallback else ""),
        "cpm_fallback": fallback,
    }
