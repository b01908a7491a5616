"""Fault driver: run a command and kill -9 it just before its Nth mutation of the store.

``python -m tests.faults.killer N cli ARGV...`` runs ``ecdctr ARGV`` (the CLI entry point, as a
pod runs it); ``python -m tests.faults.killer N publish SETTINGS_JSON PREFIX TAG`` publishes a
TPM-set-shaped artifact (six embedding tables of 64 KiB whose bytes say TAG) through
:func:`ecdctr_pipeline.data.artifacts.publish`, the one publishing path of every trainer and
of export. A *mutation* is any write to the store: an object put (``put_bytes``,
``upload_file``, ``put_if_absent``), a delete (``delete``, ``delete_prefix``) or a Delta commit
(``write_deltalake``, a commit of staged files — ``create_table_with_add_actions``,
``create_write_transaction`` —, a table-property commit). Data files written before their
commit (inside ``write_deltalake``, or staged by ingest with ``stage_file``) are invisible until
it, so part of the commit's step. ``N = 0`` kills nothing and prints
``mutations: <count>`` on stderr after the command, so a test enumerates every kill point
``1 .. count``; a killed run prints ``killed: <the mutations, the last one not made>``.
SIGKILL gives the process no chance to clean up: what it leaves is what a
node loss or an OOM kill leaves.

A barrier holds concurrent writers at the commit point: with ``KILLER_BARRIER_DIR`` set, every
call of :func:`ecdctr_pipeline.data.delta.write` (the one Delta write path of ingest, the
simulator and the DuckDB engine) first waits until ``KILLER_BARRIER_PARTIES`` processes (default
2) have reached it, then sleeps ``KILLER_BARRIER_DELAY_S`` (which one goes first is the test's
choice): the race is hit on every run, not by chance.
"""

from __future__ import annotations

import functools
import json
import os
import signal
import sys
import time

MUTATIONS = {
    "ecdctr_pipeline.data.store": {
        "LocalStore": ("put_bytes", "upload_file", "put_if_absent", "delete", "delete_prefix"),
        "S3Store": ("put_bytes", "upload_file", "put_if_absent", "delete", "delete_prefix"),
    },
}


def install(kill_at: int) -> list[str]:
    """Wrap every mutation; returns the list the mutations are recorded in."""
    import importlib

    import deltalake
    import deltalake.transaction
    from deltalake.table import TableAlterer

    seen: list[str] = []
    depth = [0]  # a mutation made inside another (delete_prefix's deletes) is part of it

    def wrap(owner, name):
        original = getattr(owner, name)

        @functools.wraps(original)
        def call(*args, **kwargs):
            if not depth[0]:
                key = next((a for a in args[1:] if isinstance(a, str)), "")
                seen.append(f"{getattr(owner, '__name__', owner)}.{name}" + (f" {key}" if key else ""))
                if len(seen) == kill_at:  # what was done, and the mutation it dies before
                    print("killed: " + json.dumps(seen), file=sys.stderr, flush=True)
                    sys.stdout.flush()
                    os.kill(os.getpid(), signal.SIGKILL)
            depth[0] += 1
            try:
                return original(*args, **kwargs)
            finally:
                depth[0] -= 1

        setattr(owner, name, call)

    for module, classes in MUTATIONS.items():
        mod = importlib.import_module(module)
        for cls, methods in classes.items():
            for m in methods:
                wrap(getattr(mod, cls), m)
    wrap(deltalake, "write_deltalake")
    wrap(deltalake.transaction, "create_table_with_add_actions")  # commits of staged files (ingest)
    wrap(deltalake.DeltaTable, "create_write_transaction")
    wrap(TableAlterer, "set_table_properties")
    if os.environ.get("KILLER_BARRIER_DIR"):
        install_barrier(os.environ["KILLER_BARRIER_DIR"], int(os.environ.get("KILLER_BARRIER_PARTIES", "2")),
                        float(os.environ.get("KILLER_BARRIER_DELAY_S", "0")))
    return seen


def install_barrier(folder: str, parties: int, delay_s: float, timeout_s: float = 120.0,
                    commit_wait_s: float = 3.0) -> None:
    """Two meeting points for concurrent writers. ``write``: the entry of the process's first
    :func:`ecdctr_pipeline.data.delta.write` (always met: nothing is locked before it), then
    ``delay_s``. ``commit``: its first ``write_deltalake`` — the commit itself — where each waits up
    to ``commit_wait_s`` for the others: a writer that checks the table and commits without a
    lock meets the other one there and both commit; one holding the table's writer lease arrives
    alone (the other waits for the lease), and says so."""
    from pathlib import Path

    import deltalake

    from ecdctr_pipeline.data import delta

    def meet(stage: str, wait_s: float) -> bool:
        d = Path(folder) / stage
        d.mkdir(parents=True, exist_ok=True)
        (d / str(os.getpid())).touch()
        deadline = time.monotonic() + wait_s
        while len(list(d.iterdir())) < parties:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    def once(original, stage: str, wait_s: float, then: float, required: bool):
        done = [False]

        @functools.wraps(original)
        def call(*args, **kwargs):
            if not done[0]:
                done[0] = True
                met = meet(stage, wait_s)
                if required and not met:
                    raise SystemExit(f"barrier: {parties} writers never met at {stage} in {folder}")
                print(f"barrier: {stage} {'met' if met else 'alone'} (pid {os.getpid()})", file=sys.stderr,
                      flush=True)
                time.sleep(then)
            return original(*args, **kwargs)

        return call

    delta.write = once(delta.write, "write", timeout_s, delay_s, True)
    deltalake.write_deltalake = once(deltalake.write_deltalake, "commit", commit_wait_s, 0.0, False)
    import deltalake.transaction as dtx  # ingest commits files it staged itself

    dtx.create_table_with_add_actions = once(dtx.create_table_with_add_actions, "commit", commit_wait_s, 0.0, False)
    deltalake.DeltaTable.create_write_transaction = once(deltalake.DeltaTable.create_write_transaction, "commit",
                                                         commit_wait_s, 0.0, False)


def tables(tag: str) -> dict[str, bytes]:
    return {f"{side}_2026-0{m}.parquet": (f"{tag}:{side}:{m}:".encode() * 8192)[:65536]
            for side in ("user", "item") for m in (7, 8, 9)}


def publish(settings_json: str, prefix: str, tag: str) -> int:
    from ecdctr_pipeline.core.settings import StoreSettings
    from ecdctr_pipeline.data import artifacts
    from ecdctr_pipeline.data.store import open_store

    store = open_store(StoreSettings.model_validate_json(settings_json))
    delay = float(os.environ.get("KILLER_FILE_DELAY_S", "0"))  # a slow upload: concurrent publishers overlap
    artifacts.publish(store, prefix, tables(tag), on_file=lambda name: time.sleep(delay), manifest=artifacts.Manifest(
        kind="tpm_embedding_set", artifact_id="2026-10", logical_date="2026-10-01", months=["2026-07", "2026-08",
                                                                                            "2026-09"],
        extra={"tag": tag}))
    return 0


def main() -> int:
    kill_at, mode, rest = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
    seen = install(kill_at)
    if mode == "cli":
        from ecdctr_pipeline.app.main import main as ecdctr

        rc = ecdctr(rest)
    elif mode == "publish":  # errors as the CLI reports them: one line, exit 2
        from ecdctr_pipeline.core.errors import EcdctrError

        try:
            rc = publish(*rest)
        except EcdctrError as exc:
            print(f"ecdctr: error: {exc}", file=sys.stderr)
            rc = 2
    else:
        raise SystemExit(f"unknown mode {mode}")
    print("mutations: " + json.dumps(seen), file=sys.stderr)
    return rc


if __name__ == "__main__":
    sys.exit(main())
