"""The raw-log contract and the feature specs, as data (version ``RAW_SCHEMA_VERSION``).

One row per impression, the same columns in both domains (``raw/natural``, ``raw/ad``),
partitioned by ``dt`` = the UTC date of ``event_time``. The ingest validator, the simulator,
Spark extraction, the Keras inputs, the quality suites and the serving signature all derive
their column lists from the specs below; nothing else spells them out.

Changing a column is a new schema version: bump ``RAW_SCHEMA_VERSION`` and say in the
README how old partitions are migrated.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import pyarrow as pa

RAW_SCHEMA_VERSION = 1

Role = Literal["time", "key", "label", "user_profile", "item_profile", "context"]


@dataclass(frozen=True)
class Column:
    name: str
    type: pa.DataType
    role: Role
    vocab_size: int | None = None  # categorical id columns: ids are 0 .. vocab_size-1 (None: hashed)
    doc: str = ""

    def __post_init__(self) -> None:
        if not self.name.isidentifier():
            raise ValueError(f"column name must be an identifier (received: {self.name!r})")
        if self.role in ("user_profile", "item_profile", "context") and not pa.types.is_integer(self.type):
            raise ValueError(f"{self.role} column {self.name} must be an integer category (received: {self.type})")


TIMESTAMP = pa.timestamp("us", tz="UTC")

RAW_COLUMNS: tuple[Column, ...] = (
    Column("event_time", TIMESTAMP, "time", doc="impression time, UTC"),
    Column("user_id", pa.int64(), "key", doc="user id, shared by both domains"),
    Column("item_id", pa.int64(), "key", doc="item id; ad items are a subset of items"),
    Column("category_id", pa.int64(), "key", doc="item category"),
    Column("click", pa.int8(), "label", doc="1 if clicked, else 0"),
    Column("user_age", pa.int8(), "user_profile", 8, "age bucket 0..7"),
    Column("user_gender", pa.int8(), "user_profile", 3, "0 unknown, 1, 2"),
    Column("user_city", pa.int16(), "user_profile", 64, "city tier/cluster id"),
    Column("item_brand", pa.int32(), "item_profile", None, "brand id (hashed into the model vocabulary)"),
    Column("item_price", pa.int8(), "item_profile", 10, "price bucket 0..9"),
    Column("hour", pa.int8(), "context", 24, "hour of day 0..23 (UTC)"),
    Column("weekday", pa.int8(), "context", 7, "0 = Monday"),
    Column("position", pa.int8(), "context", 20, "slot on the page 0..19"),
    Column("device", pa.int8(), "context", 4, "device type 0..3"),
)

RAW_SCHEMA = pa.schema([pa.field(c.name, c.type, nullable=c.role not in ("time", "key", "label")) for c in RAW_COLUMNS])
RAW_NAMES = tuple(c.name for c in RAW_COLUMNS)
IMPRESSION_KEY = ("user_id", "item_id", "event_time")  # two rows with the same key are a duplicate
ID_COLUMNS = ("user_id", "item_id", "category_id")
PARTITION = "dt"
RAW_TABLE_SCHEMA = RAW_SCHEMA.append(pa.field(PARTITION, pa.string(), nullable=False))


def columns(*roles: Role) -> tuple[Column, ...]:
    return tuple(c for c in RAW_COLUMNS if c.role in roles)


USER_PROFILE = columns("user_profile")
ITEM_PROFILE = columns("item_profile")
CONTEXT = columns("context")

# ------------------------------------------------------------------ feature tables
# features/tpm: the basic features the tiny model uses.
TPM_FEATURE_NAMES = ("event_time", "user_id", "item_id", "category_id", "click") + tuple(
    c.name for c in USER_PROFILE + ITEM_PROFILE
)

# features/complete/{domain}: everything, plus the point-in-time behaviour sequence and counters.
SEQ_ITEMS = "hist_item_ids"
SEQ_CATS = "hist_category_ids"
SEQ_LEN = "hist_len"
# ad rows under ``features.ad_history: split``: the user's source-domain (natural) clicks as a
# sequence of their own, beside the ad clicks of SEQ_* (MiNet's short-term source interest)
SRC_SEQ_ITEMS = "src_hist_item_ids"
SRC_SEQ_CATS = "src_hist_category_ids"
SRC_SEQ_LEN = "src_hist_len"


def counter_names(windows_days: tuple[int, ...] | list[int]) -> tuple[str, ...]:
    out = []
    for side in ("user", "item"):
        for d in windows_days:
            out += [f"{side}_imp_{d}d", f"{side}_clk_{d}d"]
    return tuple(out)


def complete_feature_schema(windows_days: tuple[int, ...] | list[int], *, source_sequence: bool = False) -> pa.Schema:
    """``source_sequence``: with the SRC_SEQ_* columns (ad rows under ``features.ad_history: split``)."""
    fields = [pa.field(c.name, c.type, nullable=c.role not in ("time", "key", "label")) for c in RAW_COLUMNS]
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


def tpm_feature_schema() -> pa.Schema:
    by_name = {f.name: f for f in RAW_SCHEMA}
    return pa.schema([by_name[n] for n in TPM_FEATURE_NAMES] + [pa.field(PARTITION, pa.string(), nullable=False)])
