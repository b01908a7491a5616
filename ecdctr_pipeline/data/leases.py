"""Leases: one holder at a time of a named object in the store (a Delta table's writer, an
artifact's publisher), across processes and machines.

The holder creates the lease object with an atomic create-if-absent (S3 conditional write,
``O_EXCL``-style link locally); a second one fails at once with the caller's one-line error
naming the holder. The holder renews the lease every ``ttl_s / 3`` seconds; a holder that died
leaves a lease that expires after ``ttl_s`` and is then replaced (at once when it ran on the
same machine and its process is gone).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import socket
import threading
import time
import uuid
from contextlib import contextmanager
from typing import Callable, Iterator

from ecdctr_pipeline.data.store import ArtifactStore

log = logging.getLogger(__name__)


def _dead_here(cur: dict) -> bool:
    """The holder ran on this machine and its process is gone (a ``kill -9``)."""
    from ecdctr_pipeline.data.store import process_alive

    pid = cur.get("pid")
    return cur.get("host") == socket.gethostname() and isinstance(pid, int) and pid != os.getpid() \
        and not process_alive(pid)


@contextmanager
def hold(store: ArtifactStore, key: str, *, owner: str, ttl_s: int, busy: Callable[[str], Exception],
         clock: Callable[[], float] = time.time, wait_s: float = 0.0) -> Iterator[None]:
    """Hold the lease ``key`` while the block runs; ``busy(holder description)`` is raised when
    another live holder has it (after waiting up to ``wait_s`` seconds for it to be released)."""
    token = uuid.uuid4().hex

    def body() -> bytes:
        now = clock()
        return json.dumps({"owner": owner, "token": token, "host": socket.gethostname(), "pid": os.getpid(),
                           "renewed": now, "expires": now + ttl_s}).encode()

    def holder() -> dict | None:
        try:
            return json.loads(store.get_bytes(key))
        except FileNotFoundError:
            return None
        except ValueError:
            return {"owner": "?", "expires": 0}  # unreadable: treat as expired

    deadline = time.monotonic() + wait_s
    while True:
        try:
            _acquire(store, key, body, holder, busy, clock)
            break
        except Exception as exc:  # noqa: BLE001 - only the caller's busy error is retried
            if not getattr(exc, "_lease_busy", False) or time.monotonic() >= deadline:
                raise
            time.sleep(min(0.25, max(0.0, deadline - time.monotonic())))
    stop = threading.Event()

    def renew() -> None:
        while not stop.wait(ttl_s / 3):
            cur = holder()
            if cur is None or cur.get("token") != token:
                log.error("lease %s was lost", key)
                return
            store.put_bytes(key, body())

    thread = threading.Thread(target=renew, name=f"lease-{key}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)
        cur = holder()
        if cur is not None and cur.get("token") == token:
            store.delete(key)


def _acquire(store: ArtifactStore, key: str, body, holder, busy, clock) -> None:
    def refuse(what: str) -> Exception:
        exc = busy(what)
        exc._lease_busy = True  # retried while the caller waits
        return exc

    if not store.put_if_absent(key, body()):
        cur = holder()
        if cur is not None and _dead_here(cur):  # killed on this machine: no need to wait for the expiry
            cur["expires"] = 0
        if cur is not None and cur.get("expires", 0) > clock():
            since = dt.datetime.fromtimestamp(cur.get("renewed", 0), dt.timezone.utc).isoformat(timespec="seconds")
            raise refuse(f"{cur.get('owner')} (pid {cur.get('pid')} on {cur.get('host')}, lease renewed {since})")
        if cur is not None:
            log.warning("lease %s held by %s expired: taking it over", key, cur.get("owner"))
            store.delete(key)
        if not store.put_if_absent(key, body()):
            raise refuse("another holder that took the lease first")


def list_leases(store: ArtifactStore, *, clock: Callable[[], float] = time.time) -> list[dict]:
    """Every lease in the store (``leases/…``): its key, holder, host, pid, when it was renewed,
    when it expires and whether it is ``live``, ``expired`` (the next holder takes it over) or
    ``dead`` (its holder ran on this machine and its process is gone)."""
    now, out = clock(), []
    for key in sorted(store.list("leases/")):
        try:
            cur = json.loads(store.get_bytes(key))
        except FileNotFoundError:  # released while listing
            continue
        except ValueError:
            cur = {"owner": "? (unreadable lease)", "expires": 0}
        state = "dead" if _dead_here(cur) else ("live" if cur.get("expires", 0) > now else "expired")

        def iso(t):
            return dt.datetime.fromtimestamp(t, dt.timezone.utc).isoformat(timespec="seconds") if t else None

        out.append({"key": key, "owner": cur.get("owner"), "host": cur.get("host"), "pid": cur.get("pid"),
                    "renewed": iso(cur.get("renewed")), "expires": iso(cur.get("expires")), "state": state})
    return out


def break_lease(store: ArtifactStore, key: str, *, force: bool = False,
                clock: Callable[[], float] = time.time) -> dict:
    """Remove the lease ``key`` (``leases/…``). A live one only with ``force``: its holder may still
    be writing, and a second writer is what the lease exists to prevent."""
    from ecdctr_pipeline.core.errors import EcdctrError

    found = {x["key"]: x for x in list_leases(store, clock=clock)}
    if key not in found:
        raise EcdctrError(f"no lease {key!r} in {store.root}: `ecdctr leases list` shows them")
    lease = found[key]
    if lease["state"] == "live" and not force:
        raise EcdctrError(f"lease {key} is live (held by {lease['owner']}, pid {lease['pid']} on {lease['host']}, "
                          f"expires {lease['expires']}): break it only when that holder is gone, with --force")
    store.delete(key)
    return lease
