"""A local copy of the served version for TF Serving: ``ecdctr serving-sync``.

TF Serving builds since 2.7 read no ``s3://`` path (the S3 file system left core TensorFlow),
so the serving pod does not point the server at the store. An init container
(``serving-sync --once``) copies the version ``serving/served.json`` names into a local
folder, and a sidecar (``serving-sync --follow``) follows the pointer; TF Serving polls the
local ``models.config``. The folder::

    DIR/models.config                 TF Serving's model config, base_path DIR/<model_name>
    DIR/<model_name>/<version>/       a verified copy of a serving version (saved_model.pb, ...)
    DIR/<model_name>/.sync-<v>-*/     a download in progress: never named by the config
    DIR/.serving-sync.lock            held while a sync runs (one syncer at a time per folder)

A version is downloaded into a temporary sibling folder, every file checked against its
manifest (size and SHA-256, :func:`ecdctr_pipeline.data.artifacts.fetch`), and only then
renamed into place; ``models.config`` is replaced (one rename) only after that. A version that
does not match its manifest is refused and the config keeps naming the version synced before.
The previously served version stays on disk, so a rollback is a config switch.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
import tempfile
import threading
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import Iterator

from ecdctr_pipeline.core import paths
from ecdctr_pipeline.core.errors import ArtifactMissingError, CorruptArtifactError, EcdctrError
from ecdctr_pipeline.data import artifacts
from ecdctr_pipeline.data.store import ArtifactStore
from ecdctr_pipeline.serving.pointer import SERVED_POINTER, config_version, model_config_text, read_served

log = logging.getLogger(__name__)

LOCAL_CONFIG = "models.config"
LOCK = ".serving-sync.lock"
TEMP_PREFIX = ".sync-"
KEEP_LOCAL = 2  # the served version and the one served before it (the rollback target)
FOLLOW_INTERVAL_S = 30.0


class NothingServedError(EcdctrError):
    """``serving/served.json`` names no version yet: there is nothing to sync."""


@dataclass
class SyncResult:
    version: int  # the served version, now in the local models.config
    previous: int | None  # the version the local models.config named before this sync
    downloaded: bool  # the version's files were copied from the store by this sync
    switched: bool  # models.config was rewritten
    config: str
    path: str  # DIR/<model_name>/<version>
    removed: list[int] = field(default_factory=list)  # local versions deleted (beyond the keep count)

    @property
    def changed(self) -> bool:
        return self.downloaded or self.switched or bool(self.removed)

    def describe(self) -> str:
        if not self.changed:
            return f"serving version {self.version} is already synced at {self.path}"
        how = "downloaded and verified" if self.downloaded else "already on disk"
        text = f"serving version {self.version} ({how}) at {self.path}"
        if self.switched:
            text += f"; {self.config} switched from {self.previous if self.previous is not None else 'none'}"
        if self.removed:
            text += f"; removed local version(s) {', '.join(map(str, self.removed))}"
        return text

    def to_dict(self) -> dict:
        return asdict(self) | {"changed": self.changed}


def local_versions(model_dir: Path) -> list[int]:
    """The versions synced under ``model_dir`` (folders named by a number), ascending."""
    if not model_dir.is_dir():
        return []
    return sorted(int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit())


def served_locally(dest: Path) -> int | None:
    """The version ``DIR/models.config`` names (None: no config yet)."""
    try:
        return config_version((Path(dest) / LOCAL_CONFIG).read_text())
    except FileNotFoundError:
        return None


def sync_once(store: ArtifactStore, model_name: str, dest: Path, *, keep: int = KEEP_LOCAL) -> SyncResult:
    """Make ``dest`` serve the version the store's pointer names: download and verify it unless
    it is already there, then switch ``dest/models.config`` to it and delete local versions
    beyond ``keep`` (the served one and the one served before it are kept first)."""
    if keep < 1:
        raise EcdctrError(f"serving-sync: keep {keep}: expected at least 1 (the served version)")
    dest = Path(dest)
    version = read_served(store).get("version")
    if version is None:
        raise NothingServedError(f"nothing is served yet: {store.uri(SERVED_POINTER)} names no version "
                                 "(`ecdctr export` serves the first one)")
    version = int(version)
    dest.mkdir(parents=True, exist_ok=True)
    with _locked(dest):
        model_dir = dest / model_name
        model_dir.mkdir(exist_ok=True)
        _sweep(dest, model_dir)
        config = dest / LOCAL_CONFIG
        previous = served_locally(dest)
        target = model_dir / str(version)
        prefix = paths.serving_version(version)
        manifest = artifacts.find_manifest(store, prefix)
        if manifest is None:
            raise ArtifactMissingError(f"serving version {version}, named by {store.uri(SERVED_POINTER)}, is not "
                                       f"published at {store.uri(prefix)}; {_still_served(previous, config)}")
        downloaded = not _complete(target, manifest)
        if downloaded:
            _download(store, prefix, manifest, version, target, previous, config)
        text = model_config_text(model_name, str(model_dir.resolve()), version)
        switched = _read(config) != text
        if switched:  # only now: the version's folder is complete
            _write_atomic(config, text)
        removed = _prune(model_dir, [version, previous], keep)
    return SyncResult(version=version, previous=previous, downloaded=downloaded, switched=switched,
                      config=str(config), path=str(target), removed=removed)


def follow(store: ArtifactStore, model_name: str, dest: Path, *, interval_s: float = FOLLOW_INTERVAL_S,
           keep: int = KEEP_LOCAL, stop: threading.Event | None = None) -> int:
    """Sync every ``interval_s`` seconds until ``stop`` is set; returns the number of syncs that
    changed the folder. One log line per change; a failure (a corrupt or missing version, the store
    away) is logged once per distinct message and never ends the loop: the last good version stays
    in ``models.config``."""
    stop = stop or threading.Event()
    changes = 0
    last_error: str | None = None
    while not stop.is_set():
        try:
            r = sync_once(store, model_name, dest, keep=keep)
        except Exception as exc:  # noqa: BLE001 - a sidecar keeps serving the last good version
            msg = str(exc) if isinstance(exc, EcdctrError) else f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}"
            if msg != last_error:
                log.warning("serving-sync: %s (still serving %s)", msg,
                            served_locally(dest) if (Path(dest) / LOCAL_CONFIG).exists() else "nothing")
                last_error = msg
        else:
            if r.changed:
                changes += 1
                log.info("serving-sync: %s", r.describe())
            elif last_error is not None:
                log.info("serving-sync: %s", r.describe())
            last_error = None
        stop.wait(interval_s)
    return changes


# ------------------------------------------------------------------ helpers
@contextlib.contextmanager
def _locked(dest: Path) -> Iterator[None]:
    """One syncer at a time per folder (the pod's init container, then its sidecar; two by hand):
    whatever temporary folder is found while holding the lock is a killed sync's."""
    fd = os.open(dest / LOCK, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _sweep(dest: Path, model_dir: Path) -> None:
    """Remove what a killed sync left: temporary version folders and config files."""
    for p in model_dir.glob(TEMP_PREFIX + "*"):
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
    for p in dest.glob(f".{LOCAL_CONFIG}.tmp-*"):
        p.unlink(missing_ok=True)


def _complete(target: Path, manifest: artifacts.Manifest) -> bool:
    """Whether ``target`` holds every file of the manifest at its size. A folder appears there only
    by a rename after its files were verified, so sizes suffice (no re-hashing every interval)."""
    if not target.is_dir():
        return False
    for entry in manifest.files:
        f = target / entry.name
        if not f.is_file() or f.stat().st_size != entry.size:
            return False
    return True


def _still_served(previous: int | None, config: Path) -> str:
    return (f"{config} still serves version {previous}" if previous is not None
            else f"nothing was synced: no {config} written")


def _download(store: ArtifactStore, prefix: str, manifest: artifacts.Manifest, version: int, target: Path,
              previous: int | None, config: Path) -> None:
    """Fetch the version into a temporary sibling of ``target``, verified file by file, then rename
    it into place; on any failure the temporary folder is removed and ``target`` is untouched."""
    for entry in manifest.files:  # a manifest naming a file outside the version's folder is refused
        name = PurePosixPath(entry.name)
        if name.is_absolute() or ".." in name.parts or not name.parts:
            raise CorruptArtifactError(f"serving version {version} refused: its manifest names file "
                                       f"{entry.name!r} outside the version; {_still_served(previous, config)}")
    tmp = Path(tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}{version}-", dir=target.parent))
    try:
        try:
            artifacts.fetch(store, prefix, tmp, manifest)
        except CorruptArtifactError as exc:
            raise CorruptArtifactError(f"serving version {version} refused: {exc}; "
                                       f"{_still_served(previous, config)}") from None
        os.chmod(tmp, 0o755)  # mkdtemp makes it 0700; the server may run as another user
        if target.exists():  # a copy missing files (not left by a sync): replaced in two renames
            aside = target.parent / f"{TEMP_PREFIX}{version}-old-{uuid.uuid4().hex[:8]}"
            os.rename(target, aside)
            os.rename(tmp, target)
            shutil.rmtree(aside, ignore_errors=True)
        else:
            os.rename(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except FileNotFoundError:
        return None


def _write_atomic(path: Path, text: str) -> None:
    """Replace ``path`` in one rename: TF Serving's poll reads the old config or the new one."""
    tmp = path.parent / f".{path.name}.tmp-{uuid.uuid4().hex[:8]}"
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def _prune(model_dir: Path, first: list[int | None], keep: int) -> list[int]:
    """Delete local versions beyond ``keep``: ``first`` (the served one, the one served before)
    are kept first, then the newest others."""
    have = local_versions(model_dir)
    order = [v for v in dict.fromkeys(first) if v is not None and v in have]
    order += [v for v in sorted(have, reverse=True) if v not in order]
    removed = sorted(order[keep:])
    for v in removed:
        shutil.rmtree(model_dir / str(v), ignore_errors=True)
    return removed
