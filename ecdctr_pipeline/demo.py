"""``ecdctr demo``: the main job on the embedded default.

At this stage of the project it shows the calendar the three tiers follow over the demo's
days (the plans the DAGs and trainers will use) and runs a store round trip (atomic publish
→ list → verified load → removal) on the configured root, then prints the store status.
"""

from __future__ import annotations

import datetime as dt
import json
import time

from . import artifacts, calendar, paths
from .report import markdown_table
from .settings import Settings
from .store import open_store


def calendar_rows(as_of: dt.date, days: int, settings: Settings) -> list[tuple]:
    rows = []
    for i in range(days - 1, -1, -1):
        d = as_of - dt.timedelta(days=i)
        a = calendar.actr_plan(d, settings.calendar)
        c = calendar.cpm_plan(a.cpm_monday, settings.calendar)
        t = calendar.tpm_plan(c.embedding_set, settings.calendar)
        rows.append((d.isoformat(), d.strftime("%a"), str(a.train_window), str(a.holdout_window),
                     a.cpm_monday.isoformat(), str(c.window), c.embedding_set,
                     ", ".join(str(m) for m in t.snapshot_months)))
    return rows


def store_round_trip(settings: Settings) -> dict:
    """Publish a small artifact under a scratch prefix, list it, load it verified, remove it."""
    store = open_store(settings.store)
    prefix = "_selfcheck/demo"
    payload = json.dumps({"checked": True}).encode()
    t0 = time.perf_counter()
    m = artifacts.Manifest(kind="cpm_checkpoint", artifact_id="selfcheck", logical_date="1970-01-01")
    artifacts.publish(store, prefix, {"payload.json": payload}, m)
    ok = artifacts.load_bytes(store, prefix, "payload.json") == payload
    removed = store.delete_prefix(prefix)
    return {"store": store.root, "round_trip_ok": ok, "keys_removed": removed,
            "seconds": round(time.perf_counter() - t0, 3)}


def run_demo(settings: Settings, *, as_of: str, days: int, json_out: bool = False) -> int:
    day = calendar.parse_date(as_of, what="--as-of")
    rows = calendar_rows(day, days, settings)
    check = store_round_trip(settings)
    if json_out:
        print(json.dumps({"calendar": [dict(zip(("day", "weekday", "actr_train", "actr_holdout", "cpm_monday",
                                                  "cpm_window", "embedding_set", "embedding_months"), r))
                                       for r in rows], "store_check": check}, indent=2))
        return 0
    print(f"E-CDCTR calendar for the {days} A-CTR day(s) up to {day} (store {check['store']})\n")
    print(markdown_table(("day", "", "A-CTR train (ad)", "holdout", "CPM W", "CPM window (natural)",
                          "set", "TPM months"), rows))
    print(f"\nstore round trip (publish → load verified → remove): "
          f"{'ok' if check['round_trip_ok'] else 'FAILED'} in {check['seconds']} s")
    print(f"artifacts are published under {paths.join(check['store'], 'artifacts/')}")
    return 0 if check["round_trip_ok"] else 1
