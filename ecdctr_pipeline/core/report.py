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


def screenshot(url: str, out, *, size: str = "1600,1000", budget_ms: int = 15000):
    """A PNG of ``url`` (an http:// page or a file:// one) taken by headless Chromium; written
    under a temporary name and renamed, so ``out`` is whole or absent."""
    import shutil
    import subprocess
    from pathlib import Path

    from ecdctr_pipeline.core.errors import EcdctrError

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if not chromium:
        raise EcdctrError("chromium is not installed: `make chromium` installs Debian's package")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp.png")
    r = subprocess.run([chromium, "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                        f"--window-size={size}", f"--virtual-time-budget={budget_ms}", f"--screenshot={tmp}", url],
                       capture_output=True, text=True, timeout=120)
    if r.returncode != 0 or not tmp.is_file():
        raise EcdctrError(f"chromium could not screenshot {url}: {r.stderr.strip()[-500:]}")
    tmp.replace(out)
    return out
