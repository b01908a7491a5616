"""Days known to have no impressions in a domain.

A real log can have a day without impressions in one domain (an outage, a holiday with no
campaigns). Windows never skip a missing day silently: ``ecdctr ingest --empty-day D --domain X``
records that D is known to be empty (one object under ``empty_days/<domain>/``; a day after
``--now`` is refused), and a window
then accepts D as long as it holds at most ``calendar.max_empty_days`` such days; a day that is
missing without a record still fails, naming it. Ingesting rows for a recorded day removes the
record (the data wins). The quality gate reports every empty day it accepts.
"""

from __future__ import annotations

import datetime as dt
import json

from ecdctr_pipeline.core import calendar, paths
from ecdctr_pipeline.core.errors import EcdctrError
from ecdctr_pipeline.data.store import ArtifactStore


class EmptyDayError(EcdctrError):
    """A day that cannot be recorded as empty, or a window with more empty days than allowed."""


def domain_of(table: str) -> str | None:
    """The domain whose raw days a table's partitions follow (None: not a day-partitioned table)."""
    if table == paths.tpm_features():
        return "natural"
    for domain in paths.DOMAINS:
        if table in (paths.raw_table(domain), paths.complete_features(domain)):
            return domain
    return None


def record(store: ArtifactStore, domain: str, day: str | dt.date, *, now: dt.datetime) -> dict:
    """Record ``day`` of ``domain`` as having no impressions; refused when raw data exists for it."""
    from ecdctr_pipeline.data import delta

    d = calendar.parse_date(day, what="--empty-day")
    today = now.astimezone(calendar.UTC).date() if now.tzinfo else now.date()
    if d > today:  # a day that has not begun cannot be known to be empty
        raise EmptyDayError(f"--empty-day {d} is in the future (after --now {now.isoformat()}): only a day that has "
                            "begun can be recorded as empty")
    table = paths.raw_table(domain)
    if d.isoformat() in set(delta.partitions(store, table)):
        raise EmptyDayError(f"{table} has impressions on {d}: a day with data cannot be recorded as empty")
    entry = {"domain": domain, "day": d.isoformat(), "recorded_at": now.isoformat()}
    store.put_bytes(paths.empty_day(domain, d), json.dumps(entry).encode())
    return entry


def forget(store: ArtifactStore, domain: str, days) -> list[str]:
    """Drop the records of ``days`` (ingest wrote rows for them); the days that had one."""
    have = recorded(store, domain)
    gone = sorted(set(days) & have)
    for d in gone:
        store.delete(paths.empty_day(domain, d))
    return gone


def recorded(store: ArtifactStore, domain: str) -> set[str]:
    """The days of ``domain`` recorded as empty (ISO dates)."""
    prefix = paths.empty_days(domain)
    return {k.rsplit("/", 1)[-1].removesuffix(".json") for k in store.list(prefix) if k.endswith(".json")}


def accept(store: ArtifactStore, table: str, window: calendar.Window, missing, *, max_empty: int,
           who: str) -> tuple[tuple[str, ...], list[str]]:
    """Split ``missing`` (days of ``window`` without a partition in ``table``) into the days
    recorded as empty, accepted, and the others, which the caller reports as missing. Raises when
    the accepted days are more than ``max_empty``."""
    missing = sorted(missing)
    if not missing:
        return (), []
    domain = domain_of(table)
    empty = recorded(store, domain) if domain else set()
    accepted = tuple(d for d in missing if d in empty)
    if len(accepted) > max_empty:
        raise EmptyDayError(f"{who}: window {window} of {table} holds {len(accepted)} days recorded as empty "
                            f"({', '.join(accepted)}), more than calendar.max_empty_days {max_empty}")
    return accepted, [d for d in missing if d not in empty]
