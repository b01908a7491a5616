"""One thin adapter over the store root: ``file://`` (embedded) or ``s3://`` (any S3 endpoint).

Everything that touches storage goes through :class:`ArtifactStore`; higher layers
(:mod:`.artifacts`, :mod:`.delta`, sensors) receive a store and never talk to boto3 or the
file system directly. Keys are ``/``-separated and relative to the root (see :mod:`.paths`).

On ``file://`` roots every file the store writes is created with mode 0644 and every folder with
0755 at most, whatever the process's umask (a umask of 000 would otherwise make them 0666/0777:
writable by every user of the host); :meth:`ArtifactStore.restrict_modes` brings the files
delta-rs wrote under a table to the same modes after a commit (delta-rs takes no mode option).
"""

from __future__ import annotations

import abc
import os
import re
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Iterator, Sequence
from urllib.parse import urlparse

from ecdctr_pipeline.core.errors import StoreError
from ecdctr_pipeline.core.settings import StoreSettings


class ArtifactStore(abc.ABC):
    root: str
    staging_dir: str | None = None  # local folder for scratch space (store.local_staging_dir)
    is_remote: bool = False  # True when executors reach it over the network (s3://)

    # -- primitives -------------------------------------------------------------------
    @abc.abstractmethod
    def put_bytes(self, key: str, data: bytes) -> None:
        """Write ``data`` at ``key`` in one atomic step (readers see old or new, never partial)."""

    @abc.abstractmethod
    def get_bytes(self, key: str) -> bytes:
        """Read ``key``; a missing key raises ``FileNotFoundError`` naming it."""

    @abc.abstractmethod
    def exists(self, key: str) -> bool: ...

    @abc.abstractmethod
    def list(self, prefix: str) -> list[str]:
        """All keys under ``prefix`` (recursive), sorted."""

    @abc.abstractmethod
    def delete(self, key: str) -> None: ...

    @abc.abstractmethod
    def upload_file(self, local: Path, key: str) -> None: ...

    @abc.abstractmethod
    def download_file(self, key: str, local: Path) -> None: ...

    @abc.abstractmethod
    def storage_options(self) -> dict[str, str]:
        """Options for delta-rs / pyarrow for URIs under this root."""

    @abc.abstractmethod
    def put_if_absent(self, key: str, data: bytes) -> bool:
        """Create ``key`` only if it does not exist, atomically; False when it already did."""

    @abc.abstractmethod
    def spark_uri(self, key: str = "") -> str:
        """The URI Spark (Hadoop file systems) uses for ``key``: ``file:///...`` or ``s3a://...``."""

    def check_access(self) -> None:
        """Raise a one-line :class:`StoreError` when the root cannot be reached or written."""

    @abc.abstractmethod
    def table_uri(self, key: str) -> str:
        """The location delta-rs opens for the table at ``key`` (a local path or ``s3://...``)."""

    def stage_file(self, local: Path, key: str) -> None:
        """Place ``local`` at ``key`` as a data file a Delta commit will reference (invisible to
        readers until then, so not a mutation of the store's state: like the data files
        ``write_deltalake`` writes before its commit). ``local`` is consumed."""
        self.upload_file(local, key)
        Path(local).unlink(missing_ok=True)

    def restrict_modes(self, prefix: str, only: Sequence[str] | None = None) -> int:
        """Bring what other writers (delta-rs) created under ``prefix`` to mode 0644 (files) and
        0755 (folders) at most; ``only``: just these children of ``prefix`` (and ``prefix``
        itself). Returns how many entries changed. A no-op where the store has no file modes."""
        return 0

    # -- derived ----------------------------------------------------------------------
    def scratch_dir(self, prefix: str = "ecdctr-") -> Path:
        """A fresh local scratch folder (for staging uploads and downloads). Its name carries this
        process's id; the folders of processes that no longer run (killed before their clean-up)
        are removed on the way."""
        if self.staging_dir:
            Path(self.staging_dir).mkdir(parents=True, exist_ok=True)
        parent = Path(self.staging_dir or tempfile.gettempdir())
        sweep_scratch(parent)
        return Path(tempfile.mkdtemp(prefix=f"{prefix}p{os.getpid()}-", dir=parent))

    def uri(self, key: str = "") -> str:
        return f"{self.root.rstrip('/')}/{key.lstrip('/')}" if key else self.root.rstrip("/")

    def delete_prefix(self, prefix: str) -> int:
        keys = self.list(prefix)
        for key in keys:
            self.delete(key)
        return len(keys)

    def iter_children(self, prefix: str) -> Iterator[str]:
        """Immediate child names (folders or files) of ``prefix``."""
        prefix = prefix.rstrip("/") + "/"
        seen: set[str] = set()
        for key in self.list(prefix):
            child = key[len(prefix):].split("/", 1)[0]
            if child not in seen:
                seen.add(child)
                yield child

    @property
    def is_local(self) -> bool:
        return self.root.startswith("file://")


# ------------------------------------------------------------------------------ local
_SCRATCH = re.compile(r"ecdctr-.*?p(\d+)-[^/]+")


def sweep_scratch(parent: Path) -> list[Path]:
    """Remove the ``ecdctr-…p<pid>-…`` scratch folders under ``parent`` whose process is gone."""
    removed = []
    for d in parent.glob("ecdctr-*p*-*"):
        m = _SCRATCH.fullmatch(d.name)
        if not (m and d.is_dir()) or int(m.group(1)) == os.getpid() or process_alive(int(m.group(1))):
            continue
        shutil.rmtree(d, ignore_errors=True)
        removed.append(d)
    return removed


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` runs on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


FILE_MODE = 0o644  # the most a file the local store writes allows (the umask may narrow it)
DIR_MODE = 0o755


_DIR_RACE_TRIES = 64  # how often a write re-makes a folder that a concurrent delete pruned


def _make_dirs(path: Path) -> None:
    """``mkdir -p`` with every created folder at :data:`DIR_MODE` at most (``Path.mkdir(parents=True)``
    creates the parents with 0777 less the umask). A concurrent :meth:`LocalStore.delete` may prune
    an empty parent between the walk and the ``mkdir``: the walk starts again."""
    for _ in range(_DIR_RACE_TRIES):
        missing = []
        p = path
        while not p.exists():
            missing.append(p)
            p = p.parent
        try:
            for d in reversed(missing):
                try:
                    os.mkdir(d, DIR_MODE)
                except FileExistsError:
                    continue
                _narrow(d, DIR_MODE)
            return
        except FileNotFoundError:  # a parent pruned meanwhile
            continue
    raise StoreError(f"cannot create {path}: its parent folders keep being removed")


def _create_beside(dest: Path):
    """``(tmp, file)``: a new temporary file in ``dest``'s folder, the folder made first. Once the
    file exists the folder is not empty, so no concurrent prune removes it; until then a prune may,
    and the folder is made again."""
    for _ in range(_DIR_RACE_TRIES):
        _make_dirs(dest.parent)
        tmp = dest.parent / f".{dest.name}.tmp-{uuid.uuid4().hex}"
        try:
            return tmp, _create(tmp)
        except FileNotFoundError:  # the folder pruned between the mkdir and the create
            continue
    raise StoreError(f"cannot create a file in {dest.parent}: the folder keeps being removed")


def _narrow(path: Path | int, most: int) -> None:
    """Clear the mode bits of ``path`` (a path or an open descriptor) outside ``most``."""
    st = os.fstat(path) if isinstance(path, int) else os.stat(path)
    mode = st.st_mode & 0o7777
    if mode & ~most:
        if isinstance(path, int):
            os.fchmod(path, mode & most)
        else:
            os.chmod(path, mode & most)


def _create(path: Path, *, exclusive: bool = True):
    """A new file opened for writing, created with :data:`FILE_MODE` at most."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_EXCL if exclusive else os.O_TRUNC) | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(path, flags, FILE_MODE)
    try:
        _narrow(fd, FILE_MODE)
        return os.fdopen(fd, "wb")
    except BaseException:
        os.close(fd)
        raise


class LocalStore(ArtifactStore):
    def __init__(self, root: str):
        parsed = urlparse(root)
        if parsed.scheme != "file":
            raise StoreError(f"not a file:// root: {root}")
        raw = root[len("file://"):]
        self.base = Path(raw).expanduser().resolve()
        self.root = "file://" + str(self.base)

    def path(self, key: str) -> Path:
        p = (self.base / key.lstrip("/")).resolve()
        if p != self.base and self.base not in p.parents:
            raise StoreError(f"key escapes the store root: {key}")
        return p

    def put_bytes(self, key: str, data: bytes) -> None:
        dest = self.path(key)
        tmp, out = _create_beside(dest)
        with out as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, dest)

    def get_bytes(self, key: str) -> bytes:
        p = self.path(key)
        if not p.is_file():
            raise FileNotFoundError(f"not found in store: {self.uri(key)}")
        return p.read_bytes()

    def exists(self, key: str) -> bool:
        return self.path(key).is_file()

    def list(self, prefix: str) -> list[str]:
        base = self.path(prefix) if prefix else self.base
        if base.is_file():
            return [prefix]
        if not base.is_dir():
            return []
        out = []
        for p in base.rglob("*"):
            if p.is_file() and not (p.name.startswith(".") and ".tmp-" in p.name):
                out.append(p.relative_to(self.base).as_posix())
        return sorted(out)

    def delete(self, key: str) -> None:
        p = self.path(key)
        if p.is_file():
            p.unlink()
            self._prune(p.parent)

    def _prune(self, parent: Path) -> None:
        """Remove empty folders from ``parent`` up to the root. A concurrent write may fill a folder,
        or another prune remove it, between the look and the ``rmdir``: either ends the walk (a
        write re-makes a folder pruned under it, see :func:`_create_beside`)."""
        while parent != self.base:
            try:
                if any(parent.iterdir()):
                    return
                parent.rmdir()
            except OSError:  # not empty now, or gone
                return
            parent = parent.parent

    def delete_prefix(self, prefix: str) -> int:
        """Delete everything under ``prefix``, the temporary files of killed writes included."""
        n = len(self.list(prefix))
        p = self.path(prefix)
        if p.is_dir() and p != self.base:
            shutil.rmtree(p)
            self._prune(p.parent)
        elif p.is_file():
            self.delete(prefix)
        return n

    def iter_children(self, prefix: str) -> Iterator[str]:
        """Immediate child names of ``prefix``, folders holding only a killed write's temporary
        file included (so an attempt's clean-up finds them); the temporary files themselves are not."""
        base = self.path(prefix)
        if base.is_dir():
            for c in sorted(base.iterdir()):
                if not (c.name.startswith(".") and ".tmp-" in c.name):
                    yield c.name

    def upload_file(self, local: Path, key: str) -> None:
        self._copy_in(Path(local), self.path(key))

    def _copy_in(self, local: Path, dest: Path) -> None:
        with open(local, "rb") as src:
            tmp, out = _create_beside(dest)
            with out as fh:
                shutil.copyfileobj(src, fh, 1 << 20)
        os.replace(tmp, dest)

    def stage_file(self, local: Path, key: str) -> None:
        """Move ``local`` to ``key`` (a rename when the scratch space is on the store's file
        system, else a copy), at :data:`FILE_MODE` at most."""
        dest = self.path(key)
        for _ in range(_DIR_RACE_TRIES):
            _make_dirs(dest.parent)
            try:
                os.replace(local, dest)
            except FileNotFoundError:
                if not Path(local).exists():
                    raise
                continue  # dest's folder pruned between the mkdir and the rename
            except OSError:  # another file system (EXDEV)
                self._copy_in(Path(local), dest)
                Path(local).unlink(missing_ok=True)
                return
            _narrow(dest, FILE_MODE)
            return
        raise StoreError(f"cannot stage into {dest.parent}: the folder keeps being removed")

    def restrict_modes(self, prefix: str, only: Sequence[str] | None = None) -> int:
        base = self.path(prefix)
        if not base.exists():
            return 0
        changed = 0

        def fix(p: Path, most: int) -> None:
            nonlocal changed
            try:
                if os.stat(p).st_mode & 0o7777 & ~most:
                    _narrow(p, most)
                    changed += 1
            except FileNotFoundError:  # removed meanwhile (a vacuum, a killed writer's file)
                pass

        fix(base, DIR_MODE)
        roots = [base / c for c in only] if only is not None else [base]
        for root in roots:
            if not root.exists():
                continue
            if root != base:
                fix(root, DIR_MODE if root.is_dir() else FILE_MODE)
            for dirpath, dirnames, filenames in os.walk(root):
                for d in dirnames:
                    fix(Path(dirpath) / d, DIR_MODE)
                for f in filenames:
                    fix(Path(dirpath) / f, FILE_MODE)
        return changed

    def download_file(self, key: str, local: Path) -> None:
        src = self.path(key)
        if not src.is_file():
            raise FileNotFoundError(f"not found in store: {self.uri(key)}")
        Path(local).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, local)

    def storage_options(self) -> dict[str, str]:
        return {}

    def put_if_absent(self, key: str, data: bytes) -> bool:
        dest = self.path(key)
        tmp, out = _create_beside(dest)
        with out as fh:
            fh.write(data)
        try:
            os.link(tmp, dest)  # atomic, and fails when dest exists
            return True
        except FileExistsError:
            return False
        finally:
            tmp.unlink(missing_ok=True)

    def spark_uri(self, key: str = "") -> str:
        return (self.path(key) if key else self.base).as_uri()

    def check_access(self) -> None:
        """A real write (and removal) of a probe file in the root, or in its nearest existing
        parent when the root does not exist yet: permission bits alone do not tell (root ignores
        them; a read-only mount or a full disk refuses root too)."""
        probe = self.base
        while not probe.exists():
            probe = probe.parent
        if not os.access(probe, os.W_OK):
            raise StoreError(f"store.root: {self.root} is not writable ({probe})")
        name = probe / f".ecdctr-probe.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        try:
            fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                os.write(fd, b"probe")
            finally:
                os.close(fd)
            os.unlink(name)
        except OSError as exc:
            raise StoreError(f"store.root: {self.root} is not writable: writing a file in {probe} failed "
                             f"({exc.strerror or type(exc).__name__})") from None

    def local_path(self, key: str = "") -> Path:
        return self.path(key) if key else self.base

    def table_uri(self, key: str) -> str:
        return str(self.local_path(key))


# ------------------------------------------------------------------------------ s3
class S3Store(ArtifactStore):
    def __init__(self, settings: StoreSettings):
        parsed = urlparse(settings.root)
        if parsed.scheme != "s3" or not parsed.netloc:
            raise StoreError(f"not an s3:// root with a bucket: {settings.root}")
        self.settings = settings
        self.bucket = parsed.netloc
        self.prefix = parsed.path.strip("/")
        self.root = f"s3://{self.bucket}" + (f"/{self.prefix}" if self.prefix else "")
        self._client = None

    @property
    def client(self):
        if self._client is None:
            import boto3
            from botocore.config import Config

            s = self.settings
            kwargs = {
                "region_name": s.region,
                "config": Config(retries={"max_attempts": 5, "mode": "standard"}),
            }
            endpoint = s.endpoint_url or os.environ.get("AWS_ENDPOINT_URL")
            if endpoint:
                kwargs["endpoint_url"] = endpoint
            if s.access_key_id and s.secret_access_key:
                kwargs["aws_access_key_id"] = s.access_key_id.get_secret_value()
                kwargs["aws_secret_access_key"] = s.secret_access_key.get_secret_value()
            self._client = boto3.client("s3", **kwargs)
        return self._client

    def _key(self, key: str) -> str:
        key = key.lstrip("/")
        return f"{self.prefix}/{key}" if self.prefix else key

    def _rel(self, full: str) -> str:
        return full[len(self.prefix) + 1:] if self.prefix else full

    def put_bytes(self, key: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data)

    def get_bytes(self, key: str) -> bytes:
        try:
            return self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"].read()
        except self.client.exceptions.NoSuchKey:
            raise FileNotFoundError(f"not found in store: {self.uri(key)}") from None

    def exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.head_object(Bucket=self.bucket, Key=self._key(key))
            return True
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise

    def list(self, prefix: str) -> list[str]:
        full = self._key(prefix) if prefix else (self.prefix + "/" if self.prefix else "")
        out: list[str] = []
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=full):
            out.extend(self._rel(obj["Key"]) for obj in page.get("Contents", []))
        if prefix and not prefix.endswith("/"):
            # "a/b" must not match "a/bc/..."
            out = [k for k in out if k == prefix or k.startswith(prefix + "/")]
        return sorted(out)

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self._key(key))

    def upload_file(self, local: Path, key: str) -> None:
        self.client.upload_file(str(local), self.bucket, self._key(key))

    def stage_file(self, local: Path, key: str) -> None:
        self.client.upload_file(str(local), self.bucket, self._key(key))
        Path(local).unlink(missing_ok=True)

    def download_file(self, key: str, local: Path) -> None:
        Path(local).parent.mkdir(parents=True, exist_ok=True)
        from botocore.exceptions import ClientError

        try:
            self.client.download_file(self.bucket, self._key(key), str(local))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                raise FileNotFoundError(f"not found in store: {self.uri(key)}") from None
            raise

    def storage_options(self) -> dict[str, str]:
        s = self.settings
        opts = {"AWS_REGION": s.region}
        endpoint = s.endpoint_url or os.environ.get("AWS_ENDPOINT_URL")
        if endpoint:
            opts["AWS_ENDPOINT_URL"] = endpoint
        if s.allow_http or (endpoint or "").startswith("http://"):
            opts["AWS_ALLOW_HTTP"] = "true"
        if s.access_key_id and s.secret_access_key:
            opts["AWS_ACCESS_KEY_ID"] = s.access_key_id.get_secret_value()
            opts["AWS_SECRET_ACCESS_KEY"] = s.secret_access_key.get_secret_value()
        # path-style addressing works with every S3-compatible server
        opts["AWS_VIRTUAL_HOSTED_STYLE_REQUEST"] = "false"
        return opts

    def put_if_absent(self, key: str, data: bytes) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data, IfNoneMatch="*")
            return True
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("PreconditionFailed", "412",
                                                               "ConditionalRequestConflict"):
                return False
            raise

    is_remote = True

    def table_uri(self, key: str) -> str:
        return self.uri(key)

    def spark_uri(self, key: str = "") -> str:
        return f"s3a://{self.bucket}/{self._key(key)}" if key else f"s3a://{self.bucket}/{self.prefix}".rstrip("/")

    def check_access(self) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        endpoint = self.settings.endpoint_url or os.environ.get("AWS_ENDPOINT_URL") or "AWS S3"
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code"))
            if code in ("404", "NoSuchBucket", "NotFound"):
                raise StoreError(f"store.root: bucket {self.bucket!r} does not exist at {endpoint}") from None
            if code in ("403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
                raise StoreError(f"store credentials (store.access_key_id / AWS_ACCESS_KEY_ID) were refused "
                                 f"for bucket {self.bucket!r} at {endpoint} ({code})") from None
            raise StoreError(f"store.root: cannot access bucket {self.bucket!r} at {endpoint} ({code})") from None
        except BotoCoreError as exc:
            raise StoreError(f"store.endpoint_url: cannot reach {endpoint} "
                             f"({type(exc).__name__})") from None
        # reading the bucket is allowed; writing may not be (a read-only policy or key): one
        # probe object put and removed (client calls, not store mutations: nothing to collect)
        probe = self._key(f"_probe/.ecdctr-probe.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
        try:
            self.client.put_object(Bucket=self.bucket, Key=probe, Body=b"probe")
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code"))
            raise StoreError(f"store.root: {self.root} is not writable: a write to bucket {self.bucket!r} at "
                             f"{endpoint} was refused ({code})") from None
        try:
            self.client.delete_object(Bucket=self.bucket, Key=probe)
        except ClientError:  # may put, may not delete: the publish path's clean-up will say so
            pass


def open_store(settings: StoreSettings) -> ArtifactStore:
    """The store for ``settings.root``."""
    if settings.root.startswith("file://"):
        store: ArtifactStore = LocalStore(settings.root)
    elif settings.root.startswith("s3://"):
        store = S3Store(settings)
    else:
        raise StoreError(f"unsupported store root {settings.root!r}: use file:// or s3://")
    store.staging_dir = settings.local_staging_dir
    return store
