import datetime as dt

import pytest
from hypothesis import given, settings as hsettings, strategies as st

from ecdctr_pipeline.core.calendar import (
    Month, Window, actr_plan, check_non_overlap, cpm_plan, lookback, monday_on_or_before,
    plan_for, tpm_plan,
)
from ecdctr_pipeline.core.errors import CalendarError, OverlapError
from ecdctr_pipeline.core.settings import CalendarSettings

CAL = CalendarSettings()
D = dt.date


def months(*texts):
    return tuple(Month.parse(t) for t in texts)


# ------------------------------------------------------------------ values
@pytest.mark.parametrize("m, n, expected", [
    pytest.param("2026-01", -1, "2025-12", id="back-over-year"),
    pytest.param("2026-12", 1, "2027-01", id="forward-over-year"),
    pytest.param("2026-03", -14, "2025-01", id="more-than-a-year"),
    pytest.param("2000-02", 0, "2000-02", id="zero"),
])
def test_month_arithmetic(m, n, expected):
    assert str(Month.parse(m) + n) == expected


@pytest.mark.parametrize("text", ["2026-13", "2026-00", "26-01", "2026-01-15", "abc", ""])
def test_month_parse_rejects(text):
    with pytest.raises(CalendarError):
        Month.parse(text)


def test_month_parse_accepts_first_of_month():
    assert Month.parse("2026-11-01") == Month(2026, 11)


@pytest.mark.parametrize("month, days", [
    pytest.param("2024-02", 29, id="feb-leap"),
    pytest.param("2023-02", 28, id="feb-common"),
    pytest.param("2100-02", 28, id="feb-century-common"),
    pytest.param("2000-02", 29, id="feb-400-leap"),
    pytest.param("2026-12", 31, id="december"),
])
def test_month_window_lengths(month, days):
    assert Month.parse(month).window.days == days


def test_window_is_half_open_and_checked():
    w = Window(D(2026, 1, 30), D(2026, 2, 2))
    assert w.partitions() == ["2026-01-30", "2026-01-31", "2026-02-01"]
    assert w.contains(D(2026, 2, 1)) and not w.contains(D(2026, 2, 2))
    assert [str(m) for m in w.months()] == ["2026-01", "2026-02"]
    assert w.start_ts.tzinfo is dt.timezone.utc
    with pytest.raises(CalendarError):
        Window(D(2026, 1, 2), D(2026, 1, 2))


# ------------------------------------------------------------------ TPM
@pytest.mark.parametrize("month, train, snaps", [
    pytest.param("2026-11", ("2026-05", "2026-06", "2026-07", "2026-08", "2026-09", "2026-10"),
                 ("2026-08", "2026-09", "2026-10"), id="plain"),
    pytest.param("2026-01", ("2025-07", "2025-08", "2025-09", "2025-10", "2025-11", "2025-12"),
                 ("2025-10", "2025-11", "2025-12"), id="january"),
    pytest.param("2026-03", ("2025-09", "2025-10", "2025-11", "2025-12", "2026-01", "2026-02"),
                 ("2025-12", "2026-01", "2026-02"), id="year-boundary-inside"),
])
def test_tpm_plan(month, train, snaps):
    p = tpm_plan(month, CAL)
    assert p.train_months == months(*train)
    assert p.snapshot_months == months(*snaps)
    assert p.embedding_set == month
    assert p.logical_date == Month.parse(month).first_day
    assert p.data_window == Window(Month.parse(train[0]).first_day, Month.parse(month).first_day)


def test_tpm_plan_rejects_non_first_day():
    with pytest.raises(CalendarError, match="1st"):
        tpm_plan(D(2026, 11, 2), CAL)


# ------------------------------------------------------------------ CPM
@pytest.mark.parametrize("monday, start, set_id, set_months", [
    pytest.param(D(2026, 11, 23), D(2026, 10, 26), "2026-10", ("2026-07", "2026-08", "2026-09"), id="issue-example"),
    pytest.param(D(2026, 1, 5), D(2025, 12, 8), "2025-12", ("2025-09", "2025-10", "2025-11"), id="year-boundary"),
    pytest.param(D(2024, 3, 25), D(2024, 2, 26), "2024-02", ("2023-11", "2023-12", "2024-01"), id="leap-feb-start"),
    pytest.param(D(2024, 3, 4), D(2024, 2, 5), "2024-02", ("2023-11", "2023-12", "2024-01"), id="window-spans-leap-day"),
    pytest.param(D(2023, 3, 27), D(2023, 2, 27), "2023-02", ("2022-11", "2022-12", "2023-01"), id="common-feb"),
    pytest.param(D(2026, 3, 2), D(2026, 2, 2), "2026-02", ("2025-11", "2025-12", "2026-01"), id="window-starts-in-feb"),
])
def test_cpm_plan(monday, start, set_id, set_months):
    p = cpm_plan(monday, CAL)
    assert p.window == Window(start, monday)
    assert p.eval_window == Window(monday - dt.timedelta(days=1), monday)
    assert p.train_window == Window(start, monday - dt.timedelta(days=1))
    assert p.embedding_set == set_id
    assert p.embedding_months == months(*set_months)


@pytest.mark.parametrize("day", [D(2026, 11, 24), D(2026, 11, 29), D(2024, 2, 29)])
def test_cpm_plan_rejects_non_monday(day):
    with pytest.raises(CalendarError, match="Mondays"):
        cpm_plan(day, CAL)


# ------------------------------------------------------------------ A-CTR
@pytest.mark.parametrize("day, monday, fallback, same_day", [
    pytest.param(D(2026, 11, 23), D(2026, 11, 23), D(2026, 11, 16), True, id="monday-waits-same-day"),
    pytest.param(D(2026, 11, 24), D(2026, 11, 23), D(2026, 11, 16), False, id="tuesday-fallback-8-days"),
    pytest.param(D(2026, 11, 25), D(2026, 11, 23), None, False, id="wednesday-no-fallback"),
    pytest.param(D(2026, 11, 29), D(2026, 11, 23), None, False, id="sunday"),
    pytest.param(D(2027, 1, 1), D(2026, 12, 28), None, False, id="new-year-friday"),
    pytest.param(D(2024, 2, 29), D(2024, 2, 26), None, False, id="leap-day"),
])
def test_actr_plan(day, monday, fallback, same_day):
    p = actr_plan(day, CAL)
    assert p.cpm_monday == monday
    assert p.fallback_monday == fallback
    assert p.waits_for_same_day_cpm is same_day
    assert p.train_window == Window(day - dt.timedelta(days=28), day - dt.timedelta(days=1))
    assert p.holdout_window == Window(day - dt.timedelta(days=1), day)
    assert p.expected_embedding_set == cpm_plan(monday, CAL).embedding_set


def test_actr_staleness_setting_changes_fallback():
    cal = CalendarSettings(max_cpm_staleness_days=10)
    assert actr_plan(D(2026, 11, 26), cal).fallback_monday == D(2026, 11, 16)
    cal0 = CalendarSettings(max_cpm_staleness_days=0)
    assert actr_plan(D(2026, 11, 23), cal0).fallback_monday is None


def test_actr_never_uses_a_cpm_trained_on_its_holdout_days():
    # 7 holdout days: Monday 2026-11-23's holdout is [11-16, 11-23); CPM 11-23 trained on natural
    # data up to 11-21 (11-22 is its tail), so the run takes CPM 11-16 (trained up to 11-14)
    cal = CalendarSettings(actr_holdout_days=7)
    p = actr_plan(D(2026, 11, 23), cal)
    assert p.holdout_window == Window(D(2026, 11, 16), D(2026, 11, 23))
    assert p.cpm_monday == D(2026, 11, 16) and not p.waits_for_same_day_cpm
    assert cpm_plan(p.cpm_monday, cal).train_window.end == D(2026, 11, 15) <= p.holdout_window.start
    assert actr_plan(D(2026, 11, 29), cal).cpm_monday == D(2026, 11, 23)  # its holdout starts 11-22
    assert actr_plan(D(2026, 11, 28), cal).cpm_monday == D(2026, 11, 16)


def test_window_lengths_come_from_settings():
    cal = CalendarSettings(cpm_window_days=14, actr_window_days=7, actr_holdout_days=2)
    assert cpm_plan(D(2026, 11, 23), cal).window == Window(D(2026, 11, 9), D(2026, 11, 23))
    assert cpm_plan(D(2026, 11, 23), cal).embedding_set == "2026-11"
    p = actr_plan(D(2026, 11, 25), cal)
    assert p.train_window == Window(D(2026, 11, 18), D(2026, 11, 23))
    assert p.holdout_window == Window(D(2026, 11, 23), D(2026, 11, 25))


# ------------------------------------------------------------------ non-overlap
def test_non_overlap_rule_names_months():
    w = Window(D(2026, 10, 26), D(2026, 11, 23))
    check_non_overlap("2026-10", ["2026-07", "2026-08", "2026-09"], w, tier="CPM")
    with pytest.raises(OverlapError, match=r"months 2026-10 are not before the first training month 2026-10"):
        check_non_overlap("2026-11", ["2026-08", "2026-09", "2026-10"], w, tier="CPM")
    with pytest.raises(OverlapError, match="names no months"):
        check_non_overlap("x", [], w, tier="CPM")


def test_plan_for_matches_issue_example():
    p = plan_for("2026-11-23", CAL)
    assert p["cpm"]["window"] == {"start": "2026-10-26", "end": "2026-11-23"}
    assert p["cpm"]["embedding_set"] == "2026-10"
    assert p["cpm"]["embedding_months"] == ["2026-07", "2026-08", "2026-09"]


# ------------------------------------------------------------------ properties
days_2000_2100 = st.dates(min_value=D(2000, 7, 1), max_value=D(2100, 12, 31))
window_lengths = st.integers(min_value=2, max_value=120)


@hsettings(max_examples=400, deadline=None)
@given(day=days_2000_2100, cpm_days=window_lengths, data=st.data())
def test_properties_over_2000_2100(day, cpm_days, data):
    actr_days = data.draw(st.integers(min_value=2, max_value=cpm_days))
    staleness = data.draw(st.integers(min_value=0, max_value=20))
    holdout = data.draw(st.integers(min_value=1, max_value=actr_days - 1))
    tail = data.draw(st.integers(min_value=1, max_value=min(cpm_days - 1, 8)))
    cal = CalendarSettings(cpm_window_days=cpm_days, actr_window_days=actr_days, actr_holdout_days=holdout,
                           cpm_eval_tail_days=tail, max_cpm_staleness_days=staleness)
    a = actr_plan(day, cal)
    # (d) the CPM finished its natural training data before the holdout starts, and it is the
    # latest Monday that did
    assert cpm_plan(a.cpm_monday, cal).train_window.end <= a.holdout_window.start
    later = a.cpm_monday + dt.timedelta(days=7)
    assert later > day or cpm_plan(later, cal).train_window.end > a.holdout_window.start
    # (c) every A-CTR plan names a Monday <= D (and its fallback too)
    assert a.cpm_monday.weekday() == 0 and a.cpm_monday <= day
    if a.fallback_monday:
        assert a.fallback_monday.weekday() == 0 and a.fallback_monday < a.cpm_monday
        assert (day - a.fallback_monday).days <= staleness
    for monday in [m for m in (a.cpm_monday, a.fallback_monday) if m]:
        c = cpm_plan(monday, cal)
        first_train_months = {"CPM": Month.of(c.window.start), "A-CTR": Month.of(a.train_window.start)}
        # (a) no CPM or A-CTR plan uses an embedding month >= its first training month
        for tier, first in first_train_months.items():
            assert max(c.embedding_months) < first, (tier, c, a)
        # (b) the set is produced by a TPM run whose logical date is on or before the plan's date
        tpm = tpm_plan(c.embedding_set, cal)
        assert tpm.logical_date <= monday <= day
        assert tuple(tpm.snapshot_months) == c.embedding_months


@hsettings(max_examples=200, deadline=None)
@given(day=days_2000_2100)
def test_monday_on_or_before_property(day):
    m = monday_on_or_before(day)
    assert m.weekday() == 0 and 0 <= (day - m).days < 7


def test_lookback_rejects_zero():
    with pytest.raises(CalendarError):
        lookback(D(2026, 1, 1), 0)
