"""The calendar contract of SPEC §2, as pure functions.

Every date is a UTC calendar day and every window is half-open ``[start, end)``.
"Now" is always an argument; nothing here reads the clock.

* TPM run for month ``M`` (logical date = the 1st of ``M``) trains on months
  ``M-6 .. M-1`` in order and snapshots after ``M-3, M-2, M-1``: embedding set ``M``.
* CPM run on Monday ``W`` trains on natural data ``[W-28d, W)`` (the last
  ``cpm_eval_tail_days`` held out for evaluation) and consumes embedding set
  ``S = month(W-28d)``. Non-overlap rule: ``max(set months) < month(window.start)``.
* A-CTR run on day ``D`` starts from the CPM of the latest Monday ``<= D`` whose natural
  training data ends by the holdout's start (``W - cpm_eval_tail_days <= D - actr_holdout_days``;
  with one holdout day and one tail day that is the latest Monday ``<= D``); if that one is
  late it may fall back to the previous Monday's checkpoint only while that one is no older
  than ``max_cpm_staleness_days`` at ``D``. It trains on ad data ``[D-28d, D-1d)`` and is
  gated on the holdout ``[D-1d, D)``. It uses the embedding set its CPM recorded.

Window lengths come from :class:`~ecdctr_pipeline.core.settings.CalendarSettings`.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator

from ecdctr_pipeline.core.errors import CalendarError, OverlapError
from ecdctr_pipeline.core.settings import CalendarSettings

UTC = dt.timezone.utc


# --------------------------------------------------------------------------- values
@dataclass(frozen=True, order=True)
class Month:
    """A calendar month ``YYYY-MM``; ``Month + n`` moves ``n`` months."""

    year: int
    month: int

    def __post_init__(self) -> None:
        if not 1 <= self.month <= 12:
            raise CalendarError(f"invalid month {self.year}-{self.month}: month must be 1..12")
        if not 1 <= self.year <= 9999:
            raise CalendarError(f"invalid month {self.year}-{self.month:02d}: year out of range")

    @classmethod
    def of(cls, day: dt.date) -> "Month":
        return cls(day.year, day.month)

    @classmethod
    def parse(cls, text: str) -> "Month":
        """Parse ``YYYY-MM`` (or ``YYYY-MM-01``, the month's logical date)."""
        raw = text.strip()
        parts = raw.split("-")
        try:
            if re.fullmatch(r"\d{4}-\d{2}", raw):
                return cls(int(parts[0]), int(parts[1]))
            if re.fullmatch(r"\d{4}-\d{2}-\d{2}", raw):
                day = dt.date.fromisoformat(raw)
                if day.day != 1:
                    raise CalendarError(
                        f"month {raw!r} must be given as YYYY-MM or as its 1st (YYYY-MM-01)"
                    )
                return cls.of(day)
        except ValueError:
            pass
        raise CalendarError(f"invalid month {text!r}: expected YYYY-MM")

    def __add__(self, n: int) -> "Month":
        idx = self.year * 12 + (self.month - 1) + n
        return Month(idx // 12, idx % 12 + 1)

    def __sub__(self, n: int) -> "Month":
        return self + (-n)

    @property
    def first_day(self) -> dt.date:
        return dt.date(self.year, self.month, 1)

    @property
    def window(self) -> "Window":
        return Window(self.first_day, (self + 1).first_day)

    def __str__(self) -> str:
        return f"{self.year:04d}-{self.month:02d}"


@dataclass(frozen=True)
class Window:
    """Half-open range of UTC days ``[start, end)``; checked when built."""

    start: dt.date
    end: dt.date

    def __post_init__(self) -> None:
        if not (isinstance(self.start, dt.date) and isinstance(self.end, dt.date)):
            raise CalendarError("window bounds must be dates")
        if isinstance(self.start, dt.datetime) or isinstance(self.end, dt.datetime):
            raise CalendarError("window bounds must be dates, not datetimes")
        if self.end <= self.start:
            raise CalendarError(f"empty window [{self.start}, {self.end})")

    @property
    def days(self) -> int:
        return (self.end - self.start).days

    def dates(self) -> list[dt.date]:
        return [self.start + dt.timedelta(days=i) for i in range(self.days)]

    def partitions(self) -> list[str]:
        """The ``dt=YYYY-MM-DD`` partition values the window covers."""
        return [d.isoformat() for d in self.dates()]

    def months(self) -> list[Month]:
        first, last = Month.of(self.start), Month.of(self.end - dt.timedelta(days=1))
        out, m = [], first
        while m <= last:
            out.append(m)
            m = m + 1
        return out

    def contains(self, day: dt.date) -> bool:
        return self.start <= day < self.end

    @property
    def start_ts(self) -> dt.datetime:
        return dt.datetime.combine(self.start, dt.time(), UTC)

    @property
    def end_ts(self) -> dt.datetime:
        return dt.datetime.combine(self.end, dt.time(), UTC)

    def to_dict(self) -> dict[str, str]:
        return {"start": self.start.isoformat(), "end": self.end.isoformat()}

    def __str__(self) -> str:
        return f"[{self.start}, {self.end})"


def parse_date(text: str | dt.date, *, what: str = "date") -> dt.date:
    """Parse an ISO day (``YYYY-MM-DD``; a timestamp's date part is accepted)."""
    if isinstance(text, dt.datetime):
        return text.astimezone(UTC).date() if text.tzinfo else text.date()
    if isinstance(text, dt.date):
        return text
    raw = str(text).strip()
    try:
        if len(raw) > 10:  # a timestamp: all of it must parse ("2026-01-14junk" is not a date)
            return dt.datetime.fromisoformat(raw).date()
        return dt.date.fromisoformat(raw)
    except ValueError:
        raise CalendarError(f"invalid {what} {text!r}: expected YYYY-MM-DD") from None


def parse_instant(text: str, *, what: str = "timestamp") -> dt.datetime:
    """Parse an ISO timestamp (UTC when it names no zone)."""
    try:
        t = dt.datetime.fromisoformat(str(text).strip())
    except ValueError:
        raise CalendarError(f"invalid {what} {text!r}: expected an ISO timestamp such as 2026-11-24T06:00:00Z") from None
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def run_due(day: str | dt.date) -> dt.datetime:
    """When the run of logical date ``day`` is due: 00:00 UTC that day (the DAGs' cron schedules
    fire at midnight, and Airflow 3's cron timetable makes that instant the logical date)."""
    return dt.datetime.combine(parse_date(day), dt.time(), UTC)


def monday_on_or_before(day: dt.date) -> dt.date:
    return day - dt.timedelta(days=day.weekday())


def lookback(end: dt.date, days: int) -> Window:
    """The window of ``days`` days ending (exclusive) at ``end``."""
    if days <= 0:
        raise CalendarError(f"lookback needs a positive number of days (got {days})")
    return Window(end - dt.timedelta(days=days), end)


def embedding_set_months(set_month: Month, cal: CalendarSettings) -> list[Month]:
    """Months held by embedding set ``S``: ``S-3 .. S-1`` (snapshot months of TPM run ``S``)."""
    n = cal.tpm_snapshot_months
    return [set_month - k for k in range(n, 0, -1)]


def check_non_overlap(set_id: str, set_months: Iterable[Month | str], window: Window, *, tier: str) -> None:
    """Raise :class:`OverlapError` unless every embedding month precedes the window's first month."""
    months = sorted(m if isinstance(m, Month) else Month.parse(m) for m in set_months)
    if not months:
        raise OverlapError(f"{tier}: embedding set {set_id} names no months")
    first = Month.of(window.start)
    bad = [str(m) for m in months if m >= first]
    if bad:
        raise OverlapError(
            f"{tier}: embedding set {set_id} months {', '.join(bad)} are not before the first "
            f"training month {first} of window {window} (non-overlap rule: max(set months) < "
            f"month(window.start))"
        )


# --------------------------------------------------------------------------- plans
@dataclass(frozen=True)
class TPMPlan:
    month: Month  # the run's month M; logical date = M.first_day; output = embedding set M
    train_months: tuple[Month, ...]  # M-6 .. M-1, trained in this order
    snapshot_months: tuple[Month, ...]  # M-3 .. M-1

    @property
    def logical_date(self) -> dt.date:
        return self.month.first_day

    @property
    def embedding_set(self) -> str:
        return str(self.month)

    @property
    def data_window(self) -> Window:
        return Window(self.train_months[0].first_day, self.month.first_day)

    def to_dict(self) -> dict[str, Any]:
        return {
            "logical_date": self.logical_date.isoformat(),
            "month": str(self.month),
            "train_months": [str(m) for m in self.train_months],
            "snapshot_months": [str(m) for m in self.snapshot_months],
            "data_window": self.data_window.to_dict(),
            "embedding_set": self.embedding_set,
        }


@dataclass(frozen=True)
class CPMPlan:
    monday: dt.date
    window: Window  # [W-28d, W)
    train_window: Window  # window minus the eval tail
    eval_window: Window  # the held-out tail
    embedding_set: str  # S = month(window.start)
    embedding_months: tuple[Month, ...]

    @property
    def checkpoint_id(self) -> str:
        return self.monday.isoformat()

    def to_dict(self) -> dict[str, Any]:
        return {
            "logical_date": self.monday.isoformat(),
            "checkpoint_id": self.checkpoint_id,
            "window": self.window.to_dict(),
            "train_window": self.train_window.to_dict(),
            "eval_window": self.eval_window.to_dict(),
            "embedding_set": self.embedding_set,
            "embedding_months": [str(m) for m in self.embedding_months],
            "embedding_set_tpm_run": Month.parse(self.embedding_set).first_day.isoformat(),
        }


@dataclass(frozen=True)
class ACTRPlan:
    day: dt.date
    cpm_monday: dt.date  # latest Monday <= D
    fallback_monday: dt.date | None  # previous Monday if within the staleness limit
    train_window: Window  # [D-28d, D-1d)
    holdout_window: Window  # [D-1d, D)
    expected_embedding_set: str  # what the CPM of cpm_monday records
    expected_embedding_months: tuple[Month, ...]
    fallback_embedding_set: str | None
    max_cpm_staleness_days: int
    waits_for_same_day_cpm: bool = field(default=False)

    @property
    def window(self) -> Window:
        return Window(self.train_window.start, self.holdout_window.end)

    def to_dict(self) -> dict[str, Any]:
        return {
            "logical_date": self.day.isoformat(),
            "cpm_checkpoint": self.cpm_monday.isoformat(),
            "cpm_fallback": self.fallback_monday.isoformat() if self.fallback_monday else None,
            "max_cpm_staleness_days": self.max_cpm_staleness_days,
            "waits_for_same_day_cpm": self.waits_for_same_day_cpm,
            "train_window": self.train_window.to_dict(),
            "holdout_window": self.holdout_window.to_dict(),
            "embedding_set": self.expected_embedding_set,
            "embedding_months": [str(m) for m in self.expected_embedding_months],
            "fallback_embedding_set": self.fallback_embedding_set,
        }


def tpm_plan(month: Month | str | dt.date, cal: CalendarSettings) -> TPMPlan:
    """Plan of the TPM run for month ``M`` (a ``Month``, ``YYYY-MM`` or the 1st of the month)."""
    if isinstance(month, dt.date):
        if month.day != 1:
            raise CalendarError(f"TPM runs on the 1st of a month; {month} is not a 1st")
        month = Month.of(month)
    elif isinstance(month, str):
        month = Month.parse(month)
    n, k = cal.tpm_train_months, cal.tpm_snapshot_months
    train = tuple(month - i for i in range(n, 0, -1))
    return TPMPlan(month=month, train_months=train, snapshot_months=train[-k:])


def cpm_plan(monday: dt.date | str, cal: CalendarSettings) -> CPMPlan:
    """Plan of the CPM run on Monday ``W``; any other weekday is a :class:`CalendarError`."""
    monday = parse_date(monday, what="CPM date")
    if monday.weekday() != 0:
        raise CalendarError(
            f"CPM runs on Mondays; {monday} is a {monday.strftime('%A')} "
            f"(the week's Monday is {monday_on_or_before(monday)})"
        )
    window = lookback(monday, cal.cpm_window_days)
    eval_window = lookback(monday, cal.cpm_eval_tail_days)
    train_window = Window(window.start, eval_window.start)
    set_month = Month.of(window.start)
    months = tuple(embedding_set_months(set_month, cal))
    check_non_overlap(str(set_month), months, window, tier=f"CPM {monday}")
    return CPMPlan(monday, window, train_window, eval_window, str(set_month), months)


def cpm_age_days(cpm_monday: dt.date, day: dt.date) -> int:
    """Age of the checkpoint of ``cpm_monday`` as seen from ``day``."""
    return (day - cpm_monday).days


def actr_plan(day: dt.date | str, cal: CalendarSettings) -> ACTRPlan:
    """Plan of the A-CTR run for day ``D``."""
    day = parse_date(day, what="A-CTR date")
    holdout = lookback(day, cal.actr_holdout_days)
    # the CPM must have finished its natural training data before the holdout starts (a CPM
    # trained on holdout days would make the gate's GAUC optimistic)
    monday = monday_on_or_before(min(day, holdout.start + dt.timedelta(days=cal.cpm_eval_tail_days)))
    prev = monday - dt.timedelta(days=7)
    fallback = prev if cpm_age_days(prev, day) <= cal.max_cpm_staleness_days else None
    train = Window(day - dt.timedelta(days=cal.actr_window_days), holdout.start)
    primary = cpm_plan(monday, cal)
    check_non_overlap(primary.embedding_set, primary.embedding_months, train, tier=f"A-CTR {day}")
    fb_set = None
    if fallback is not None:
        fb = cpm_plan(fallback, cal)
        check_non_overlap(fb.embedding_set, fb.embedding_months, train, tier=f"A-CTR {day} (fallback)")
        fb_set = fb.embedding_set
    return ACTRPlan(
        day=day,
        cpm_monday=monday,
        fallback_monday=fallback,
        train_window=train,
        holdout_window=holdout,
        expected_embedding_set=primary.embedding_set,
        expected_embedding_months=primary.embedding_months,
        fallback_embedding_set=fb_set,
        max_cpm_staleness_days=cal.max_cpm_staleness_days,
        waits_for_same_day_cpm=day == monday,
    )


def plan_for(day: dt.date | str, cal: CalendarSettings) -> dict[str, Any]:
    """Everything ``ecdctr plan --as-of DAY`` shows: the runs of all three tiers *as of* ``DAY``.

    * ``tpm``: the run of the month containing DAY (its logical date is that month's 1st),
    * ``cpm``: the run of the latest Monday <= DAY,
    * ``actr``: the run for DAY itself.
    """
    day = parse_date(day, what="as-of date")
    return {
        "as_of": day.isoformat(),
        "tpm": tpm_plan(Month.of(day), cal).to_dict(),
        "cpm": cpm_plan(monday_on_or_before(day), cal).to_dict(),
        "actr": actr_plan(day, cal).to_dict(),
    }


# --------------------------------------------------------------------------- ranges
def iter_days(start: dt.date, end: dt.date) -> Iterator[dt.date]:
    """Days of ``[start, end]`` (inclusive, as a backfill range reads)."""
    d = start
    while d <= end:
        yield d
        d += dt.timedelta(days=1)


def mondays_between(start: dt.date, end: dt.date) -> list[dt.date]:
    return [d for d in iter_days(start, end) if d.weekday() == 0]


def month_starts_between(start: dt.date, end: dt.date) -> list[Month]:
    return [Month.of(d) for d in iter_days(start, end) if d.day == 1]
