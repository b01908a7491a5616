"""The trigger behind a deferrable step sensor: Airflow's triggerer runs it (asyncio), repeating the
step's readiness check (``ecdctr check ...``, the same argv) until it passes, fails, or the
sensor's deadline passes. The check runs in a worker thread; it only reads manifests."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any, AsyncIterator

from airflow.triggers.base import BaseTrigger, TriggerEvent

CLASSPATH = "ecdctr_pipeline.orchestration.triggers.StepTrigger"


def check(argv: list[str]) -> tuple[str, Any]:
    """Run a readiness check once: ("ready", its JSON result), ("waiting", what is missing) or
    ("failed", why: a condition that waiting cannot fix, such as overlapping months)."""
    from ecdctr_pipeline.cli.verbs import execute
    from ecdctr_pipeline.core.errors import EcdctrError, NotReadyError

    try:
        rc, result = execute(list(argv))
    except NotReadyError as exc:
        return "waiting", str(exc)
    except EcdctrError as exc:
        return "failed", str(exc)
    if rc != 0:
        return "failed", f"`ecdctr {' '.join(argv)}` exited {rc}"
    return "ready", result


class StepTrigger(BaseTrigger):
    def __init__(self, argv: list[str], poke_interval: float, deadline: str):
        super().__init__()
        self.argv = list(argv)
        self.poke_interval = float(poke_interval)
        self.deadline = deadline  # ISO instant (UTC)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return CLASSPATH, {"argv": self.argv, "poke_interval": self.poke_interval, "deadline": self.deadline}

    async def run(self) -> AsyncIterator[TriggerEvent]:
        deadline = dt.datetime.fromisoformat(self.deadline)
        while True:
            status, payload = await asyncio.to_thread(check, self.argv)
            if status == "ready":
                yield TriggerEvent({"status": "ready", "result": payload})
                return
            if status == "failed":
                yield TriggerEvent({"status": "failed", "message": payload})
                return
            left = (deadline - dt.datetime.now(dt.timezone.utc)).total_seconds()
            if left <= 0:
                yield TriggerEvent({"status": "timeout", "message": payload})
                return
            self.log.info("waiting: %s", payload)
            await asyncio.sleep(min(self.poke_interval, left))
