"""The raw-log contract and the feature specs, as data: a :class:`FeatureSchema`.

One row per impression, the same columns in both domains (``raw/natural``, ``raw/ad``),
partitioned by ``dt`` = the UTC date of ``event_time``. The columns are declared by role in
configuration (``features.raw_schema``: a mapping or the path of a YAML file; README "Feature
schema"); :data:`DEFAULT_SPEC` is the contract the project ships. The ingest
validator, the simulator, both extraction engines, the Keras inputs, the quality suites and the
serving signature all take their column lists from the settings' schema; nothing else spells
them out.

* ``time`` (``event_time``), ``key`` (``user_id``, ``item_id``, ``category_id``) and ``label``
  (``click``) are fixed columns: every feature and model refers to them. A log that names them
  otherwise maps its names in ``sources``.
* ``user_profile``, ``item_profile`` and ``context`` are free: each column an integer category
  with either a ``vocab_size`` (ids ``0 .. n-1``; ingest refuses others, the model gives missing
  values their own bucket) or ``hash_buckets`` (any integer, hashed ``mod n`` into the model's
  vocabulary).

A schema has a ``name`` and a ``version``, and a fingerprint of its columns. Each Delta table
records the schema it was written under (table properties ``ecdctr.schema``,
``ecdctr.schema_fingerprint``) and each artifact's manifest records it (``feature_schema``);
a table or model built under another schema is refused, naming both versions
(:class:`SchemaMismatchError`). Changing a column is a new version.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Literal, Mapping

from ecdctr_pipeline.core.errors import EcdctrError

Role = Literal["time", "key", "label", "user_profile", "item_profile", "context"]
FREE_ROLES = ("user_profile", "item_profile", "context")
INT_TYPES = ("int8", "int16", "int32", "int64")
TIME_TYPE = "timestamp"  # microseconds, UTC


class SchemaMismatchError(EcdctrError):
    """A table or an artifact was built under another feature schema than the settings declare."""


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # one of INT_TYPES, or TIME_TYPE (``event_time``); :attr:`arrow` is the Arrow type
    role: Role
    vocab_size: int | None = None  # categorical ids 0 .. vocab_size-1
    hash_buckets: int | None = None  # or: any integer, hashed mod hash_buckets by the model
    doc: str = ""

    def __post_init__(self) -> None:
        if not self.name.isidentifier():
            raise ValueError(f"column name must be an identifier (received: {self.name!r})")
        if self.type not in INT_TYPES + (TIME_TYPE,) or (self.role == "time") != (self.type == TIME_TYPE):
            raise ValueError(f"{self.role} column {self.name}: type must be one of {', '.join(INT_TYPES)} "
                             f"(received: {self.type})")
        if self.role in FREE_ROLES:
            if (self.vocab_size is None) == (self.hash_buckets is None):
                raise ValueError(f"{self.role} column {self.name} needs exactly one of vocab_size and hash_buckets")

    @property
    def arrow(self):
        import pyarrow as pa

        return pa.timestamp("us", tz="UTC") if self.type == TIME_TYPE else getattr(pa, self.type)()

    @property
    def max_value(self) -> int:
        return 2 ** (int(self.type[3:]) - 1) - 1


# the fixed columns: every feature, counter and sequence refers to them
FIXED_COLUMNS: tuple[Column, ...] = (
    Column("event_time", TIME_TYPE, "time", doc="impression time, UTC"),
    Column("user_id", "int64", "key", doc="user id, shared by both domains"),
    Column("item_id", "int64", "key", doc="item id; ad items are a subset of items"),
    Column("category_id", "int64", "key", doc="item category"),
    Column("click", "int8", "label", doc="1 if clicked, else 0"),
)
FIXED_NAMES = tuple(c.name for c in FIXED_COLUMNS)
IMPRESSION_KEY = ("user_id", "item_id", "event_time")  # two rows with the same key are a duplicate
ID_COLUMNS = ("user_id", "item_id", "category_id")
PARTITION = "dt"

# the contract the project ships (version 1 of the raw log, unchanged since the first release)
DEFAULT_SPEC: dict[str, Any] = {
    "name": "default",
    "version": 1,
    "user_profile": [
        {"name": "user_age", "type": "int8", "vocab_size": 8, "doc": "age bucket 0..7"},
        {"name": "user_gender", "type": "int8", "vocab_size": 3, "doc": "0 unknown, 1, 2"},
        {"name": "user_city", "type": "int16", "vocab_size": 64, "doc": "city tier/cluster id"},
    ],
    "item_profile": [
        {"name": "item_brand", "type": "int32", "hash_buckets": 1000, "doc": "brand id (hashed)"},
        {"name": "item_price", "type": "int8", "vocab_size": 10, "doc": "price bucket 0..9"},
    ],
    "context": [
        {"name": "hour", "type": "int8", "vocab_size": 24, "doc": "hour of day 0..23 (UTC)"},
        {"name": "weekday", "type": "int8", "vocab_size": 7, "doc": "0 = Monday"},
        {"name": "position", "type": "int8", "vocab_size": 20, "doc": "slot on the page 0..19"},
        {"name": "device", "type": "int8", "vocab_size": 4, "doc": "device type 0..3"},
    ],
}

# table properties recording the schema a Delta table was written under
TABLE_PROPERTY = "ecdctr.schema"
TABLE_FINGERPRINT = "ecdctr.schema_fingerprint"


@dataclass(frozen=True)
class SchemaIdentity:
    """What tables and manifests record of a schema."""

    name: str
    version: int
    fingerprint: str

    @property
    def label(self) -> str:
        return f"'{self.name}' v{self.version} ({self.fingerprint[:12]})"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "fingerprint": self.fingerprint}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "SchemaIdentity":
        return cls(str(d["name"]), int(d["version"]), str(d["fingerprint"]))

    @classmethod
    def from_table_properties(cls, props: Mapping[str, str | None]) -> "SchemaIdentity | None":
        label, fp = props.get(TABLE_PROPERTY), props.get(TABLE_FINGERPRINT)
        if not label or not fp or "@" not in label:
            return None
        name, _, version = label.rpartition("@")
        return cls(name, int(version), fp)

    def table_properties(self) -> dict[str, str]:
        return {TABLE_PROPERTY: f"{self.name}@{self.version}", TABLE_FINGERPRINT: self.fingerprint}


@dataclass(frozen=True)
class FeatureSchema:
    name: str
    version: int
    columns: tuple[Column, ...]  # the fixed columns first, then the free ones in declared order
    sources: tuple[tuple[str, str], ...] = field(default=())  # (column, its name in ingested files)

    # ------------------------------------------------------------------ building
    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> "FeatureSchema":
        """From the settings' form (:data:`DEFAULT_SPEC`; ``features.raw_schema``). Raises
        ``ValueError`` naming the column."""
        cols = list(FIXED_COLUMNS)
        for role in FREE_ROLES:
            for c in spec.get(role) or ():
                cols.append(Column(c["name"], c["type"], role, c.get("vocab_size"), c.get("hash_buckets"),
                                   c.get("doc") or ""))
        names = [c.name for c in cols]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"column(s) declared twice or reusing a fixed column's name: {', '.join(dup)}")
        reserved = sorted(n for n in names if n == PARTITION or n.startswith("_") or n in _DERIVED)
        if reserved:
            raise ValueError(f"column name(s) reserved for derived features: {', '.join(reserved)}")
        for c in cols:
            if c.vocab_size is not None and c.vocab_size - 1 > c.max_value:
                raise ValueError(f"{c.role} column {c.name}: vocab_size {c.vocab_size} does not fit {c.type}")
        sources = dict(spec.get("sources") or {})
        unknown = sorted(set(sources) - set(names))
        if unknown:
            raise ValueError(f"sources name unknown column(s) {', '.join(unknown)}")
        taken = list(sources.values())
        # a file name used twice, or the name of a column that is not itself renamed
        clash = sorted({s for s in taken if taken.count(s) > 1}
                       | {s for k, s in sources.items() if s != k and s in names and s not in sources})
        if clash:
            raise ValueError(f"sources map several columns to (or onto another column's name) {', '.join(clash)}")
        return cls(str(spec["name"]), int(spec["version"]), tuple(cols), tuple(sorted(sources.items())))

    # ------------------------------------------------------------------ identity
    @property
    def fingerprint(self) -> str:
        """SHA-256 of what tables and models depend on: each column's name, type, role and
        vocabulary (not ``doc``, not ``sources``: renaming input columns changes no table)."""
        body = [[c.name, c.type, c.role, c.vocab_size, c.hash_buckets] for c in self.columns]
        return hashlib.sha256(json.dumps(body, separators=(",", ":")).encode()).hexdigest()

    @property
    def identity(self) -> SchemaIdentity:
        return SchemaIdentity(self.name, self.version, self.fingerprint)

    def require(self, recorded: SchemaIdentity | None, what: str) -> None:
        """Refuse ``what`` (a table, an artifact) recorded under another schema. ``None``: recorded
        before schemas were versioned, i.e. under the default contract."""
        mine = self.identity
        theirs = recorded or DEFAULT_SCHEMA.identity
        if theirs.fingerprint == mine.fingerprint:
            return
        tag = " (recorded before schemas were versioned)" if recorded is None else ""
        if (theirs.name, theirs.version) == (mine.name, mine.version):
            raise SchemaMismatchError(
                f"{what} was built under feature schema {theirs.label}, the settings declare {mine.label}: the "
                "same name and version with other columns; give a changed schema a new version")
        raise SchemaMismatchError(f"{what} was built under feature schema {theirs.label}{tag}, the settings declare "
                                  f"{mine.label}: use the schema it was built with, or a new store")

    # ------------------------------------------------------------------ columns by role
    def by_role(self, *roles: Role) -> tuple[Column, ...]:
        return tuple(c for c in self.columns if c.role in roles)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(name)

    @property
    def user_profile(self) -> tuple[Column, ...]:
        return self.by_role("user_profile")

    @property
    def item_profile(self) -> tuple[Column, ...]:
        return self.by_role("item_profile")

    @property
    def context(self) -> tuple[Column, ...]:
        return self.by_role("context")

    @property
    def categorical(self) -> tuple[str, ...]:
        """The free columns' names: profile and context categories."""
        return tuple(c.name for c in self.by_role(*FREE_ROLES))

    def source_of(self, name: str) -> str:
        """The column's name in ingested files."""
        return dict(self.sources).get(name, name)

    # ------------------------------------------------------------------ tables
    @property
    def raw_schema(self):
        """The raw columns as a ``pyarrow.Schema``."""
        import pyarrow as pa

        return pa.schema([pa.field(c.name, c.arrow, nullable=c.role in FREE_ROLES) for c in self.columns])

    @property
    def raw_table_schema(self):
        import pyarrow as pa

        return self.raw_schema.append(pa.field(PARTITION, pa.string(), nullable=False))

    @property
    def tpm_feature_names(self) -> tuple[str, ...]:
        """features/tpm: the basic features the tiny model uses."""
        return FIXED_NAMES + tuple(c.name for c in self.user_profile + self.item_profile)

    def tpm_feature_schema(self):
        import pyarrow as pa

        by_name = {f.name: f for f in self.raw_schema}
        return pa.schema([by_name[n] for n in self.tpm_feature_names] + [pa.field(PARTITION, pa.string(), nullable=False)])

    def complete_feature_schema(self, windows_days, *, source_sequence: bool = False):
        """features/complete/{domain}: everything, plus the point-in-time behaviour sequence(s) and
        counters. ``source_sequence``: with the SRC_SEQ_* columns (``features.ad_history: split``)."""
        import pyarrow as pa

        fields = list(self.raw_schema)
        for items, cats, length in [(SEQ_ITEMS, SEQ_CATS, SEQ_LEN)] + (
                [(SRC_SEQ_ITEMS, SRC_SEQ_CATS, SRC_SEQ_LEN)] if source_sequence else []):
            fields += [
                pa.field(items, pa.list_(pa.int64()), nullable=False),
                pa.field(cats, pa.list_(pa.int64()), nullable=False),
                pa.field(length, pa.int32(), nullable=False),
            ]
        fields += [pa.field(n, pa.int32(), nullable=False) for n in counter_names(windows_days)]
        fields.append(pa.field(PARTITION, pa.string(), nullable=False))
        return pa.schema(fields)

    # ------------------------------------------------------------------ documentation
    def describe(self) -> str:
        """The columns as a Markdown table (``ecdctr config schema``)."""
        rows = ["| column | role | type | vocabulary | source | doc |", "|---|---|---|---|---|---|"]
        for c in self.columns:
            voc = f"{c.vocab_size} ids" if c.vocab_size else f"hashed into {c.hash_buckets}" if c.hash_buckets else ""
            rows.append(f"| {c.name} | {c.role} | {c.type} | {voc} | {self.source_of(c.name)} | {c.doc} |")
        return f"feature schema {self.identity.label}\n\n" + "\n".join(rows)


# ------------------------------------------------------------------ derived feature columns
SEQ_ITEMS = "hist_item_ids"
SEQ_CATS = "hist_category_ids"
SEQ_LEN = "hist_len"
# ad rows under ``features.ad_history: split``: the user's source-domain (natural) clicks as a
# sequence of their own, beside the ad clicks of SEQ_* (MiNet's short-term source interest)
SRC_SEQ_ITEMS = "src_hist_item_ids"
SRC_SEQ_CATS = "src_hist_category_ids"
SRC_SEQ_LEN = "src_hist_len"
# the model's domain indicator (Sample merging) is an input name too
_DERIVED = (SEQ_ITEMS, SEQ_CATS, SEQ_LEN, SRC_SEQ_ITEMS, SRC_SEQ_CATS, SRC_SEQ_LEN, "domain")


def counter_names(windows_days) -> tuple[str, ...]:
    out = []
    for side in ("user", "item"):
        for d in windows_days:
            out += [f"{side}_imp_{d}d", f"{side}_clk_{d}d"]
    return tuple(out)


DEFAULT_SCHEMA = FeatureSchema.from_spec(DEFAULT_SPEC)
