"""``ecdctr simulate``: a seeded two-domain impression generator with the properties that
motivate E-CDCTR (SPEC §3). It never looks at any model.

The world (users, items, categories, profiles) is drawn once from the seed; each day of each
domain is drawn from ``(seed, domain, day)``, so the same seed gives identical tables and any
sub-range regenerates the same rows. Properties, each with the knob of :class:`Scale` that
sets it:

* **natural ≥ 5× the ad volume** — ``natural_per_day`` / ``ad_per_day`` (6× at every scale).
* **sessions** — a user's impressions of a day come in sessions of about ``session_natural``
  / ``session_ad`` impressions, so per-user metrics (GAUC) see several impressions per user.
* **lower ad CTR** — ``natural_bias`` > ``ad_bias`` (logit offsets of the click model).
* **shared users** — both domains draw impressions from the same user pool.
* **ad items ⊂ items** — ``ad_item_fraction`` of the items carry ads; ad impressions only
  show those.
* **stable long-term + drifting short-term interests** — a user's taste is
  ``u_long + u_short(month)``; ``u_long`` is fixed, ``u_short`` moves month to month on a
  per-user periodic path (``drift``: its size, ``drift_period_months``: its speed).
* **users absent for weeks who come back** — in each 4-week block a user is away with
  probability ``absence_prob`` for 7–21 consecutive days, then returns.
* **category structure** — items belong to ``n_categories`` categories whose latent vectors
  items scatter around (``item_spread``); exposure prefers the user's favourite categories
  (``exposure_focus``).
* **profiles carry signal** — ``u_long`` is centred on a vector of the user's age × gender
  group (``profile_signal``); item price bucket follows item quality.

* **domain shift** — the ad domain is not the natural one with fewer rows: its click function
  has an ad-specific part (a per-user ad taste vector weighted ``ad_taste_shift``, an
  ad-specific item quality weighted ``ad_quality_shift``), and its context features are
  distributed differently (``ad_feature_shift``: sponsored slots instead of the natural feed's
  geometric positions, a more mobile device mix), so BatchNorm statistics learned on natural
  rows do not fit ad rows (what Table 6's "all but BN" is about). At 0 the ad rows are drawn
  exactly as before these knobs existed (the extra draws use their own random streams).

Columns follow the feature schema (``features.raw_schema``): the default schema's profile and
context columns come from the generators above (a declared column of that name takes their
values, reduced into its vocabulary); any other declared column is drawn uniformly from its
vocabulary (hashed: 4x its buckets), per user, per item or per impression by its role, and
carries no signal.

Click model: ``logit = bias_domain + affinity * z(<u, v_item>) + quality_item
+ position_effect + device_effect``, where ``z`` standardises the taste match with a mean and
spread measured once per world and domain on a calibration sample, so the CTR levels
(``natural_bias``, ``ad_bias``) mean the same at every scale.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow as pa

from ecdctr_pipeline.core.calendar import iter_days
from ecdctr_pipeline.core.errors import EcdctrError
from ecdctr_pipeline.core.schema import DEFAULT_SCHEMA, Column, FeatureSchema

DOMAIN_CODE = {"natural": 1, "ad": 2}
EPOCH = dt.date(2000, 1, 1)


@dataclass(frozen=True)
class Scale:
    n_users: int
    n_items: int
    n_categories: int
    natural_per_day: int
    ad_per_day: int
    n_brands: int = 500
    latent_dim: int = 8
    ad_item_fraction: float = 0.3
    natural_bias: float = -2.5
    ad_bias: float = -3.1
    affinity: float = 1.2
    drift: float = 0.7
    drift_period_months: float = 7.0
    absence_prob: float = 0.25
    item_spread: float = 0.6
    exposure_focus: float = 1.5
    profile_signal: float = 0.8
    session_natural: float = 8.0  # mean impressions per user session
    session_ad: float = 6.0
    ad_taste_shift: float = 0.5  # weight of the per-user ad-specific taste (0: ads clicked by the natural taste)
    ad_quality_shift: float = 0.5  # weight of the ad-specific item quality
    ad_feature_shift: float = 1.0  # 0..1: how far ad positions and devices move from the natural mix
    chunk_rows: int = 1_000_000  # rows per Delta commit (bounds memory)

    def __post_init__(self):
        for knob, lo, hi in (("ad_taste_shift", 0.0, None), ("ad_quality_shift", 0.0, None),
                             ("ad_feature_shift", 0.0, 1.0)):
            v = getattr(self, knob)
            if not np.isfinite(v) or v < lo or (hi is not None and v > hi):
                rng = f"in [{lo}, {hi}]" if hi is not None else f">= {lo}"
                raise EcdctrError(f"simulator scale: {knob} must be {rng}, got {v}")


SCALES: dict[str, Scale] = {
    "tiny": Scale(n_users=300, n_items=240, n_categories=8, natural_per_day=960, ad_per_day=160, n_brands=40),
    "small": Scale(n_users=6000, n_items=1500, n_categories=24, natural_per_day=9000, ad_per_day=1500, n_brands=200),
    "medium": Scale(n_users=60_000, n_items=20_000, n_categories=64, natural_per_day=36_000, ad_per_day=6_000),
    "large": Scale(n_users=500_000, n_items=100_000, n_categories=128, natural_per_day=360_000, ad_per_day=60_000,
                   n_brands=5000),
}


def get_scale(name: str, **overrides) -> Scale:
    if name not in SCALES:
        raise EcdctrError(f"unknown scale {name!r}: expected one of {', '.join(SCALES)}")
    return replace(SCALES[name], **overrides) if overrides else SCALES[name]


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


class World:
    """Static users, items and categories drawn from the seed."""

    def __init__(self, scale: Scale, seed: int, schema: FeatureSchema = DEFAULT_SCHEMA):
        self.scale, self.seed, self.schema = scale, seed, schema
        s, k = scale, scale.latent_dim
        rng = np.random.default_rng([seed, 0])
        # categories and items
        self.cat_vec = rng.normal(size=(s.n_categories, k))
        cat_pop = rng.zipf(1.6, size=s.n_categories).astype(float)
        self.item_cat = rng.choice(s.n_categories, size=s.n_items, p=cat_pop / cat_pop.sum())
        self.item_vec = self.cat_vec[self.item_cat] + s.item_spread * rng.normal(size=(s.n_items, k))
        self.item_quality = rng.normal(0, 0.4, size=s.n_items)
        self.item_pop = rng.lognormal(0, 0.8, size=s.n_items)
        self.item_brand = rng.integers(0, s.n_brands, size=s.n_items).astype(np.int32)
        q = np.argsort(np.argsort(self.item_quality + rng.normal(0, 0.3, s.n_items)))
        self.item_price = np.minimum(9, q * 10 // s.n_items).astype(np.int8)
        self.is_ad_item = rng.random(s.n_items) < s.ad_item_fraction
        self.is_ad_item[rng.integers(0, s.n_items)] = True
        # users: profile groups carry signal
        self.user_age = rng.integers(0, 8, size=s.n_users).astype(np.int8)
        self.user_gender = rng.choice(3, size=s.n_users, p=[0.1, 0.45, 0.45]).astype(np.int8)
        self.user_city = np.minimum(63, rng.zipf(1.5, size=s.n_users) - 1).astype(np.int16)
        group_vec = rng.normal(size=(8, 3, k))
        self.user_long = s.profile_signal * group_vec[self.user_age, self.user_gender] + rng.normal(
            0, 1.0, size=(s.n_users, k))
        # short-term drift: a smooth per-user periodic path through latent space
        self.drift_a = rng.normal(size=(s.n_users, k))
        self.drift_b = rng.normal(size=(s.n_users, k))
        self.drift_phase = rng.uniform(0, 2 * np.pi, size=s.n_users)
        self.activity = rng.lognormal(0, 0.7, size=s.n_users)
        self.position_effect = -0.08 * np.arange(20)
        self.device_effect = np.array([0.0, 0.1, -0.1, 0.05])
        self.hour_profile = np.array([1, 1, 1, 1, 1, 2, 3, 5, 6, 6, 6, 7, 8, 7, 6, 6, 7, 8, 9, 10, 10, 8, 5, 2], float)
        self.hour_profile /= self.hour_profile.sum()
        # the ad domain's own click function (drawn from a stream of their own: the draws above
        # are the same whatever the shift knobs)
        shift_rng = np.random.default_rng([seed, 11])
        self.user_ad_taste = shift_rng.normal(size=(s.n_users, k))
        self.item_ad_quality = shift_rng.normal(0, 0.4, size=s.n_items)
        # per-domain item samplers, grouped by category
        self._samplers = {d: self._sampler(self.is_ad_item if d == "ad" else np.ones(s.n_items, bool))
                          for d in DOMAIN_CODE}
        self._match_stats = {d: (0.0, 1.0) for d in DOMAIN_CODE}
        for d in DOMAIN_CODE:
            users = np.random.default_rng([seed, 9, DOMAIN_CODE[d]]).integers(0, s.n_users, 20_000)
            match = self._exposure(d, users, 0, np.random.default_rng([seed, 10, DOMAIN_CODE[d]]))[1]
            self._match_stats[d] = (float(match.mean()), float(match.std() + 1e-9))

    def _sampler(self, allowed: np.ndarray):
        items = np.flatnonzero(allowed)
        items = items[np.argsort(self.item_cat[items], kind="stable")]
        cats = self.item_cat[items]
        w = self.item_pop[items]
        cum = np.cumsum(w)
        n_cat = self.scale.n_categories
        ends = np.searchsorted(cats, np.arange(n_cat), side="right")
        starts = np.searchsorted(cats, np.arange(n_cat), side="left")
        base = np.where(starts > 0, cum[np.maximum(starts - 1, 0)], 0.0)
        total = np.where(ends > starts, cum[np.maximum(ends - 1, 0)] - base, 0.0)
        return items, cum, base, total, total > 0

    # -- time-varying parts ---------------------------------------------------------
    @staticmethod
    def month_index(day: dt.date) -> int:
        return (day.year - EPOCH.year) * 12 + day.month - 1

    def user_short(self, users: np.ndarray, month_idx: int) -> np.ndarray:
        angle = 2 * np.pi * month_idx / self.scale.drift_period_months + self.drift_phase[users]
        return self.scale.drift * (np.cos(angle)[:, None] * self.drift_a[users]
                                   + np.sin(angle)[:, None] * self.drift_b[users])

    def away(self, day: dt.date) -> np.ndarray:
        """Users absent on ``day``: per 4-week block, an away spell of 7–21 days."""
        ordinal = (day - EPOCH).days
        block, offset = divmod(ordinal, 28)
        rng = np.random.default_rng([self.seed, 7, block])
        n = self.scale.n_users
        is_away = rng.random(n) < self.scale.absence_prob
        start = rng.integers(0, 14, size=n)
        length = rng.integers(7, 22, size=n)
        return is_away & (offset >= start) & (offset < start + length)

    def _exposure(self, domain: str, users: np.ndarray, month_idx: int, rng: np.random.Generator):
        """Items shown to ``users``: a category by taste (Gumbel-max), then an item by popularity.
        Returns the items and the raw taste match ``<u, v_item>/sqrt(k)``."""
        s, k = self.scale, self.scale.latent_dim
        taste = self.user_long[users] + self.user_short(users, month_idx)
        if domain == "ad" and s.ad_taste_shift:
            taste = taste + s.ad_taste_shift * self.user_ad_taste[users]
        items, cum, base, total, has = self._samplers[domain]
        logits = s.exposure_focus * (taste @ self.cat_vec.T) / np.sqrt(k)
        logits = np.where(has[None, :], logits, -np.inf)
        cats = np.argmax(logits + rng.gumbel(size=logits.shape), axis=1)
        pick = base[cats] + rng.random(len(users)) * total[cats]
        item = items[np.minimum(np.searchsorted(cum, pick, side="right"), len(items) - 1)]
        return item, np.einsum("ij,ij->i", taste, self.item_vec[item]) / np.sqrt(k)

    AD_SLOTS = np.array([0, 3, 7, 11], np.int8)  # sponsored positions of the ad domain's feed
    AD_DEVICES = np.array([0.75, 0.2, 0.04, 0.01])

    def _ad_context(self, position: np.ndarray, device: np.ndarray, day: dt.date):
        """With probability ``ad_feature_shift`` an ad impression sits in a sponsored slot and
        comes from the ad domain's device mix instead of the natural one."""
        f = self.scale.ad_feature_shift
        if not f:
            return position, device
        rng = np.random.default_rng([self.seed, 12, (day - EPOCH).days])
        n = len(position)
        moved = rng.random(n) < f
        position = np.where(moved, self.AD_SLOTS[rng.integers(0, len(self.AD_SLOTS), n)], position).astype(np.int8)
        device = np.where(moved, rng.choice(4, size=n, p=self.AD_DEVICES), device).astype(np.int8)
        return position, device

    # -- one day ------------------------------------------------------------------
    def day(self, domain: str, day: dt.date) -> pa.Table:
        s = self.scale
        code = DOMAIN_CODE[domain]
        rng = np.random.default_rng([self.seed, code, (day - EPOCH).days])
        mean = s.natural_per_day if domain == "natural" else s.ad_per_day
        mean *= 1.1 if day.weekday() >= 5 else 1.0
        n_target = int(rng.poisson(mean))
        sess = s.session_natural if domain == "natural" else s.session_ad
        n_sessions = max(1, int(round(n_target / sess)))
        weights = np.where(self.away(day), 0.0, self.activity)
        session_users = rng.choice(s.n_users, size=n_sessions, p=weights / weights.sum())
        users = np.repeat(session_users, 1 + rng.poisson(sess - 1, size=n_sessions))
        n = len(users)
        item, match = self._exposure(domain, users, self.month_index(day), rng)
        position = np.minimum(19, rng.geometric(0.25, size=n) - 1).astype(np.int8)
        device = rng.choice(4, size=n, p=[0.55, 0.3, 0.1, 0.05]).astype(np.int8)
        quality = self.item_quality[item]
        if domain == "ad":
            position, device = self._ad_context(position, device, day)
            quality = quality + s.ad_quality_shift * self.item_ad_quality[item]
        bias = s.natural_bias if domain == "natural" else s.ad_bias
        mu, sd = self._match_stats[domain]
        logit = (bias + s.affinity * (match - mu) / sd
                 + quality + self.position_effect[position] + self.device_effect[device])
        click = (rng.random(n) < _sigmoid(logit)).astype(np.int8)
        # times: an hour profile, strictly increasing microseconds within the day
        hour = rng.choice(24, size=n, p=self.hour_profile)
        offs = np.sort(hour * 3_600_000_000 + rng.integers(0, 3_600_000_000 - n - 1, size=n))
        offs = offs + np.arange(n)
        order = np.argsort(offs, kind="stable")
        start_us = int((day - dt.date(1970, 1, 1)).days) * 86_400_000_000
        et = start_us + offs[order]
        users, item, position, device, click = users[order], item[order], position[order], device[order], click[order]
        known = {
            "event_time": pa.array(et, type=pa.int64()).cast(self.schema.column("event_time").arrow),
            "user_id": pa.array(users.astype(np.int64)),
            "item_id": pa.array(item.astype(np.int64)),
            "category_id": pa.array(self.item_cat[item].astype(np.int64)),
            "click": pa.array(click),
        }
        free = {
            "user_age": lambda: self.user_age[users],
            "user_gender": lambda: self.user_gender[users],
            "user_city": lambda: self.user_city[users],
            "item_brand": lambda: self.item_brand[item],
            "item_price": lambda: self.item_price[item],
            "hour": lambda: (et // 3_600_000_000) % 24,
            "weekday": lambda: np.full(n, day.weekday()),
            "position": lambda: position,
            "device": lambda: device,
        }
        cols = {}
        for c in self.schema.columns:
            if c.name in known:
                cols[c.name] = known[c.name]
            else:
                values = free[c.name]() if c.name in free else self._drawn(c, users, item, code, day)
                size = c.vocab_size or c.max_value + 1
                cols[c.name] = pa.array((np.asarray(values, np.int64) % size).astype(c.arrow.to_pandas_dtype()))
        return pa.table(cols, schema=pa.schema([pa.field(c.name, c.arrow) for c in self.schema.columns]))

    def _drawn(self, c: Column, users: np.ndarray, items: np.ndarray, code: int, day: dt.date) -> np.ndarray:
        """A declared column the generators do not know: uniform over its vocabulary (hashed: 4x its
        buckets), one value per user or item (profiles) or per impression (context), from a random
        stream of its own (the other columns' draws do not change)."""
        import zlib

        size = c.vocab_size or min(4 * c.hash_buckets, c.max_value + 1)
        tag = zlib.crc32(c.name.encode())
        if c.role == "context":
            return np.random.default_rng([self.seed, 12, code, (day - EPOCH).days, tag]).integers(0, size, len(users))
        owners = self.scale.n_users if c.role == "user_profile" else self.scale.n_items
        per_owner = np.random.default_rng([self.seed, 13, tag]).integers(0, size, owners)
        return per_owner[users if c.role == "user_profile" else items]


def iter_chunks(world: World, domain: str, start: dt.date, end: dt.date, on_day=None) -> Iterator[pa.Table]:
    """Tables of at most about ``chunk_rows`` rows covering ``[start, end]`` day by day."""
    buf: list[pa.Table] = []
    rows = 0
    for day in iter_days(start, end):
        t = world.day(domain, day)
        buf.append(t)
        rows += t.num_rows
        if on_day:
            on_day(day, t.num_rows)
        if rows >= world.scale.chunk_rows:
            yield pa.concat_tables(buf)
            buf, rows = [], 0
    if buf:
        yield pa.concat_tables(buf)


def simulate(store, start: dt.date, end: dt.date, scale: str | Scale, seed: int,
             domains: tuple[str, ...] = ("natural", "ad"), progress: bool = True, *,
             schema: FeatureSchema = DEFAULT_SCHEMA) -> dict[str, dict]:
    """Generate ``[start, end]`` (inclusive) for each domain under ``schema`` and write it through
    ingest's path."""
    from ecdctr_pipeline.data.ingest import validate, write_raw
    from ecdctr_pipeline.core.report import progress as bar

    world, now = _world(start, end, scale, seed, schema)
    n_days = (end - start).days + 1
    summary: dict[str, dict] = {}
    for domain in domains:
        rows = clicks = 0
        version = None
        pbar = bar(range(n_days), desc=f"simulate {domain}", total=n_days, unit="day") if progress else None
        tick = (lambda d, n: pbar.update(1)) if pbar is not None else None
        for chunk in iter_chunks(world, domain, start, end, on_day=tick):
            typed = validate(chunk, None, now=now, domain=domain, schema=schema)
            version = write_raw(store, domain, typed, schema=schema).version
            rows += typed.num_rows
            clicks += int(np.asarray(typed["click"]).sum())
        if pbar is not None:
            pbar.close()
        summary[domain] = {"rows": rows, "ctr": clicks / max(rows, 1), "version": version, "days": n_days}
    return summary


def write_files(out: str | Path, start: dt.date, end: dt.date, scale: str | Scale, seed: int, *,
                schema: FeatureSchema = DEFAULT_SCHEMA, domains: tuple[str, ...] = ("natural", "ad"),
                fmt: str = "parquet") -> dict[str, dict]:
    """Generate ``[start, end]`` like :func:`simulate`, but as the files a user would bring:
    ``<out>/<domain>/<first day>.<fmt>`` (one file per chunk of days), columns named as the
    schema's ``sources`` name them, CSV times as ISO-8601 UTC. ``ecdctr ingest`` reads them back."""
    import os
    import shutil

    if fmt not in ("parquet", "csv"):
        raise EcdctrError(f"simulate: --format must be parquet or csv (got {fmt!r})")
    root = Path(out)
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise EcdctrError(f"simulate: --out {root} is not an empty folder")
    world, now = _world(start, end, scale, seed, schema)
    # written into a sibling folder renamed at the end: a failed run leaves no partial log
    staging = root.parent / f".{root.name}.tmp-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        summary = _write_domains(world, staging, root, start, end, schema, domains, fmt, now)
        if root.exists():
            root.rmdir()
        os.replace(staging, root)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return summary


def _world(start: dt.date, end: dt.date, scale: str | Scale, seed: int, schema: FeatureSchema):
    """The world of ``seed`` and the ``now`` its days are validated at (the day after ``end``)."""
    if end < start:
        raise EcdctrError(f"simulate: --end {end} is before --start {start}")
    world = World(get_scale(scale) if isinstance(scale, str) else scale, seed, schema)
    return world, dt.datetime.combine(end + dt.timedelta(days=1), dt.time(), dt.timezone.utc)


def _write_domains(world: World, staging: Path, root: Path, start: dt.date, end: dt.date, schema: FeatureSchema,
                   domains: tuple[str, ...], fmt: str, now: dt.datetime) -> dict[str, dict]:
    """Each domain's files into ``staging/<domain>``; the summary names them under ``root``."""
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    from ecdctr_pipeline.data.ingest import validate

    summary: dict[str, dict] = {}
    for domain in domains:
        folder = staging / domain
        folder.mkdir(parents=True, exist_ok=True)
        files = rows = 0
        for chunk in iter_chunks(world, domain, start, end):
            typed = validate(chunk, None, now=now, domain=domain, schema=schema)  # what ingest will check
            first = typed["dt"][0].as_py()
            t = typed.drop_columns(["dt"]).rename_columns([schema.source_of(n) for n in schema.names])
            if fmt == "csv":
                t = t.set_column(0, t.column_names[0], _iso_utc(t.column(0)))
                pcsv.write_csv(t, folder / f"{first}.csv")
            else:
                pq.write_table(t, folder / f"{first}.parquet")
            files += 1
            rows += t.num_rows
        summary[domain] = {"files": files, "rows": rows, "folder": str(root / domain)}
    return summary


def _iso_utc(col):
    """UTC times as ISO-8601 text (Arrow's ``%S`` carries the microseconds)."""
    import pyarrow.compute as pc

    return pc.strftime(col, format="%Y-%m-%dT%H:%M:%S+00:00", locale="C")
