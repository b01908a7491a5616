"""The fault suite's counts (bad inputs tried, kill points, concurrent scenarios), printed at
the end of the run and written to ``<pytest basetemp>/fault-counts.json``."""

from __future__ import annotations

import json

import pytest

COUNTS: dict[str, int] = {}


@pytest.fixture(scope="session")
def fault_counts() -> dict[str, int]:
    return COUNTS


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if not COUNTS:
        return
    terminalreporter.section("fault suite")
    for name, n in COUNTS.items():
        terminalreporter.write_line(f"{name}: {n}")
    try:
        out = config._tmp_path_factory.getbasetemp() / "fault-counts.json"
        out.write_text(json.dumps(COUNTS, indent=2))
    except Exception:  # noqa: BLE001 - the summary is a convenience
        pass
