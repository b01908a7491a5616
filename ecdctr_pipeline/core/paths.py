"""Where everything lives in the store: one pure function per location.

Keys are relative to the store root (``ECDCTR_STORE``: ``file://./ecdctr-data`` by default,
``s3://bucket/prefix`` in production)::

    <root>/
    ├── raw/natural/  raw/ad/                       Delta, partitioned by dt=YYYY-MM-DD
    ├── features/tpm/                               Delta, partitioned by dt
    ├── features/complete/natural/  .../ad/         Delta, partitioned by dt
    ├── artifacts/
    │   ├── tpm/sets/M=YYYY-MM/                     embedding set M (months M-3..M-1)
    │   │   ├── MANIFEST.json                       written last: the commit point
    │   │   └── <attempt>/user_YYYY-MM.parquet, item_YYYY-MM.parquet  (x3)
    │   ├── cpm/checkpoints/W=YYYY-MM-DD/           MANIFEST.json + <attempt>/weights ...
    │   └── actr/models/D=YYYY-MM-DD/               MANIFEST.json + <attempt>/model, eval.json
    ├── serving/actr/<int version>/                 SavedModel for TF Serving (+ warm-up)
    ├── serving/models.config, serving/served.json  TF Serving model config; the served version
    ├── reports/actr/D=YYYY-MM-DD/evaluation.json   A-CTR vs Target-only on the holdout
    ├── leases/<table>.json                         the writer lease of a Delta table (see delta.py)
    ├── empty_days/<domain>/<dt>.json               a day recorded as having no impressions
    └── quality/<table>/<dt>/result.json            validation results

An artifact is a folder with a ``MANIFEST.json``. The files of one publish go under a fresh
``<attempt>`` sub-folder and the manifest, written last, names them; a reader that finds no
manifest treats the artifact as absent, and a forced re-run swaps the manifest in one write,
so readers see either the old artifact or the new one, never a mix.
"""

from __future__ import annotations

import datetime as dt
import re

DOMAINS = ("natural", "ad")
MANIFEST = "MANIFEST.json"

TPM_SETS = "artifacts/tpm/sets"
CPM_CHECKPOINTS = "artifacts/cpm/checkpoints"
ACTR_MODELS = "artifacts/actr/models"
SERVING_ACTR = "serving/actr"
QUALITY = "quality"

# artifact kind -> (base prefix, folder-name pattern)
ARTIFACT_KINDS: dict[str, tuple[str, str]] = {
    "tpm_embedding_set": (TPM_SETS, r"M=\d{4}-\d{2}"),
    "cpm_checkpoint": (CPM_CHECKPOINTS, r"W=\d{4}-\d{2}-\d{2}"),
    "actr_model": (ACTR_MODELS, r"D=\d{4}-\d{2}-\d{2}"),
    "serving_version": (SERVING_ACTR, r"\d+"),
}


def _check_domain(domain: str) -> str:
    if domain not in DOMAINS:
        raise ValueError(f"unknown domain {domain!r}: expected one of {', '.join(DOMAINS)}")
    return domain


def writer_lease(table: str) -> str:
    """The lease object a writer of Delta table ``table`` holds while it writes."""
    return f"leases/{table.strip('/')}.json"


def resume_state(artifact: str) -> str:
    """Where a trainer publishing ``artifact`` keeps its in-progress checkpoint (removed on publish)."""
    return f"_resume/{artifact.strip('/')}"


def raw_table(domain: str) -> str:
    return f"raw/{_check_domain(domain)}"


def tpm_features() -> str:
    return "features/tpm"


def complete_features(domain: str) -> str:
    return f"features/complete/{_check_domain(domain)}"


def tpm_set(month: object) -> str:
    """Embedding set ``M`` (``month`` as ``Month`` or ``YYYY-MM``)."""
    text = str(month)
    if not re.fullmatch(r"\d{4}-\d{2}", text):
        raise ValueError(f"embedding set id must be YYYY-MM (got {text!r})")
    return f"{TPM_SETS}/M={text}"


def cpm_checkpoint(monday: dt.date | str) -> str:
    return f"{CPM_CHECKPOINTS}/W={_iso(monday)}"


def actr_model(day: dt.date | str) -> str:
    return f"{ACTR_MODELS}/D={_iso(day)}"


def serving_version(version: int) -> str:
    if int(version) <= 0:
        raise ValueError(f"serving version must be a positive integer (got {version})")
    return f"{SERVING_ACTR}/{int(version)}"


def empty_days(domain: str) -> str:
    """Where the days recorded as having no impressions in ``domain`` are kept (one object a day)."""
    return f"empty_days/{_check_domain(domain)}"


def empty_day(domain: str, day: dt.date | str) -> str:
    return f"{empty_days(domain)}/{_iso(day)}.json"


def quality_result(table: str, day: dt.date | str) -> str:
    """Validation results of ``table`` for a day (or a month ``YYYY-MM`` for embedding sets)."""
    key = str(day) if re.fullmatch(r"\d{4}-\d{2}", str(day)) else _iso(day)
    return f"{QUALITY}/{table.strip('/')}/{key}"


def evaluation_report(day: dt.date | str) -> str:
    """A-CTR vs Target-only on the day's holdout (``ecdctr evaluate``, the A-CTR DAG)."""
    return f"reports/actr/D={_iso(day)}/evaluation.json"


def manifest_key(prefix: str) -> str:
    return f"{prefix.rstrip('/')}/{MANIFEST}"


def artifact_file(prefix: str, attempt: str, name: str) -> str:
    return f"{prefix.rstrip('/')}/{attempt}/{name}"


def kind_of(prefix: str) -> str | None:
    """The artifact kind whose layout ``prefix`` follows, or None."""
    for kind, (base, pattern) in ARTIFACT_KINDS.items():
        if re.fullmatch(re.escape(base) + "/" + pattern, prefix.rstrip("/")):
            return kind
    return None


def join(root: str, key: str) -> str:
    """Full URI of ``key`` under a store root (``file://...`` or ``s3://...``)."""
    return f"{root.rstrip('/')}/{key.lstrip('/')}" if key else root.rstrip("/")


def _iso(day: dt.date | str) -> str:
    text = day.isoformat() if isinstance(day, dt.date) else str(day)
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        raise ValueError(f"expected a date YYYY-MM-DD (got {text!r})")
    return text
