"""Small helpers for human-readable output: Markdown tables and one-line progress."""

from __future__ import annotations

import sys
from typing import Any, Iterable, Sequence


def fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 1000 else f"{value:,.0f}"
    if isinstance(value, (list, tuple)):
        return ", ".join(fmt(v) for v in value)
    return str(value)


def markdown_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    body = [[fmt(c).replace("|", "\\|") for c in r] for r in rows]
    widths = [max([len(h)] + [len(r[i]) for r in body]) for i, h in enumerate(headers)]
    line = lambda cells: "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"  # noqa: E731
    out = [line(list(headers)), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out.extend(line(r) for r in body)
    return "\n".join(out)


def progress(iterable, *, desc: str, total: int | None = None, unit: str = "it"):
    """A tqdm progress bar on stderr (plain lines when stderr is not a terminal)."""
    from tqdm import tqdm

    return tqdm(iterable, desc=desc, total=total, unit=unit, file=sys.stderr,
                mininterval=0.5 if sys.stderr.isatty() else 5.0, dynamic_ncols=True)
