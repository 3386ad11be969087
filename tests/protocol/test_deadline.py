"""Due dates for each unit, the 15:00 rule, pauses and the 766 on-time/early/late rules."""

from __future__ import annotations

from datetime import date

import pytest

from protocol.calendar import Calendar, default_calendar, from_local, local_datetime
from protocol.deadline import (
    OFFICE_HOURS,
    OfficeHours,
    StatutoryTime,
    Timeliness,
    TimeUnit,
    add_working_ms,
    classify,
    classify_without_due,
    clock_start,
    due_at,
    extend_for_pause,
    working_ms,
)
from protocol.errors import CalendarNotCovered, DomainError

HOUR = 3_600_000
SAME_DAY = StatutoryTime(0, TimeUnit.SAME_DAY)


@pytest.fixture(scope="module")
def cal() -> Calendar:
    return default_calendar()


def at(y: int, m: int, d: int, hh: int = 0, mm: int = 0) -> int:
    return from_local(date(y, m, d), hh, mm)


def test_same_day_before_cutoff(cal: Calendar) -> None:
    assert due_at(at(2026, 11, 23, 9, 30), SAME_DAY, cal) == at(2026, 11, 23, 17)
    assert due_at(at(2026, 11, 23, 15, 0), SAME_DAY, cal) == at(2026, 11, 23, 17)
    assert due_at(at(2026, 11, 23, 7, 10), SAME_DAY, cal) == at(2026, 11, 23, 17)


def test_same_day_after_cutoff_goes_to_next_working_day(cal: Calendar) -> None:
    assert due_at(at(2026, 11, 23, 15, 0) + 1, SAME_DAY, cal) == at(2026, 11, 24, 17)
    assert due_at(at(2026, 11, 27, 15, 1), SAME_DAY, cal) == at(2026, 11, 30, 17)  # Friday → Monday
    assert due_at(at(2026, 2, 13, 16, 0), SAME_DAY, cal) == at(2026, 2, 23, 17)  # eve of Tết


def test_same_day_received_on_non_working_day(cal: Calendar) -> None:
    assert due_at(at(2026, 11, 21, 9), SAME_DAY, cal) == at(2026, 11, 23, 17)  # Saturday morning
    assert due_at(at(2026, 4, 27, 9), SAME_DAY, cal) == at(2026, 4, 28, 17)  # compensatory Monday
    assert due_at(at(2026, 1, 10, 9), SAME_DAY, cal) == at(2026, 1, 10, 17)  # swapped working Saturday


def test_working_days_do_not_count_the_reception_day(cal: Calendar) -> None:
    three = StatutoryTime(3, TimeUnit.WORKING_DAYS)
    assert due_at(at(2026, 11, 23, 10), three, cal) == at(2026, 11, 26, 17)
    assert due_at(at(2026, 11, 23, 16, 59), three, cal) == at(2026, 11, 26, 17)


def test_working_days_after_hours_start_next_working_day(cal: Calendar) -> None:
    three = StatutoryTime(3, TimeUnit.WORKING_DAYS)
    assert due_at(at(2026, 11, 23, 17, 30), three, cal) == at(2026, 11, 27, 17)
    assert due_at(at(2026, 11, 21, 10), three, cal) == at(2026, 11, 26, 17)  # Saturday online submission


def test_working_days_skip_holidays(cal: Calendar) -> None:
    seven = StatutoryTime(7, TimeUnit.WORKING_DAYS)
    # Thu 23/4/2026: 24 Fri, (27 Mon off), 28, 29, (30/4, 1/5 off), 4, 5, 6, 7 → 7th working day is Thu 7/5
    assert due_at(at(2026, 4, 23, 10), seven, cal) == at(2026, 5, 7, 17)
    twenty = StatutoryTime(20, TimeUnit.WORKING_DAYS)
    assert due_at(at(2026, 2, 2, 9), twenty, cal) == at(2026, 3, 9, 17)  # Tết week skipped


def test_hours_use_working_time_only(cal: Calendar) -> None:
    ten = StatutoryTime(10, TimeUnit.HOURS)
    # Fri 13/2/2026 10:00: 2 h to noon, 4 h afternoon, then Tết; Mon 23/2 08:00 + 4 h
    assert due_at(at(2026, 2, 13, 10), ten, cal) == at(2026, 2, 23, 12)
    eight = StatutoryTime(8, TimeUnit.HOURS)
    assert due_at(at(2026, 11, 23, 8), eight, cal) == at(2026, 11, 23, 17)
    assert due_at(at(2026, 11, 23, 12, 30), StatutoryTime(1, TimeUnit.HOURS), cal) == at(2026, 11, 23, 14)
    assert due_at(at(2026, 11, 23, 19), StatutoryTime(4, TimeUnit.HOURS), cal) == at(2026, 11, 24, 12)


def test_calendar_days_move_off_a_holiday(cal: Calendar) -> None:
    ten = StatutoryTime(10, TimeUnit.CALENDAR_DAYS)
    assert due_at(at(2026, 4, 16, 10), ten, cal) == at(2026, 4, 28, 17)  # 26/4 Sunday, 27/4 nghỉ bù
    assert due_at(at(2026, 11, 2, 10), ten, cal) == at(2026, 11, 12, 17)
    fifteen = StatutoryTime(15, TimeUnit.CALENDAR_DAYS)
    assert due_at(at(2026, 2, 4, 10), fifteen, cal) == at(2026, 2, 23, 17)  # 19/2 is Tết


def test_clock_start(cal: Calendar) -> None:
    assert clock_start(at(2026, 11, 23, 10), cal) == at(2026, 11, 23, 10)
    assert clock_start(at(2026, 11, 23, 12, 15), cal) == at(2026, 11, 23, 13)
    assert clock_start(at(2026, 11, 23, 6), cal) == at(2026, 11, 23, 8)
    assert clock_start(at(2026, 11, 27, 18), cal) == at(2026, 11, 30, 8)


def test_working_ms_and_add_working_ms(cal: Calendar) -> None:
    assert working_ms(at(2026, 11, 23, 10), at(2026, 11, 24, 10), cal) == 8 * HOUR
    assert working_ms(at(2026, 11, 27, 16), at(2026, 11, 30, 9), cal) == 2 * HOUR
    assert working_ms(at(2026, 11, 24), at(2026, 11, 23), cal) == 0
    assert add_working_ms(at(2026, 11, 23, 11), 0, cal) == at(2026, 11, 23, 11)
    assert add_working_ms(at(2026, 11, 23, 11), HOUR, cal) == at(2026, 11, 23, 12)
    assert add_working_ms(at(2026, 11, 23, 11), HOUR + 1, cal) == at(2026, 11, 23, 13) + 1


def test_pause_extends_working_day_due_by_working_time(cal: Calendar) -> None:
    due = at(2026, 11, 27, 17)  # Friday
    # paused Mon 23/11 10:00 → Wed 25/11 10:00 = 16 working hours → Tue 1/12 17:00
    extended = extend_for_pause(due, at(2026, 11, 23, 10), at(2026, 11, 25, 10), TimeUnit.WORKING_DAYS, cal)
    assert extended == at(2026, 12, 1, 17)
    # a pause over a weekend only costs nothing
    assert extend_for_pause(due, at(2026, 11, 28, 9), at(2026, 11, 29, 18), TimeUnit.WORKING_DAYS, cal) == due
    assert extend_for_pause(due, at(2026, 11, 25), at(2026, 11, 24), TimeUnit.HOURS, cal) == due


def test_pause_extends_calendar_day_due_by_started_days(cal: Calendar) -> None:
    due = at(2026, 11, 12, 17)
    assert extend_for_pause(due, at(2026, 11, 3, 9), at(2026, 11, 4, 10), TimeUnit.CALENDAR_DAYS, cal) == at(
        2026, 11, 16, 17
    )  # 2 started days → Sat 14 → Monday 16


def test_statutory_time_validation() -> None:
    with pytest.raises(DomainError):
        StatutoryTime(1, TimeUnit.SAME_DAY)
    with pytest.raises(DomainError):
        StatutoryTime(0, TimeUnit.WORKING_DAYS)
    with pytest.raises(DomainError):
        StatutoryTime(True, TimeUnit.HOURS)
    with pytest.raises(DomainError):
        OfficeHours(periods=((13 * 60, 17 * 60), (8 * 60, 12 * 60)))
    with pytest.raises(DomainError):
        OfficeHours(same_day_cutoff=18 * 60)
    assert OFFICE_HOURS.day_end == 17 * 60


def test_custom_office_hours(cal: Calendar) -> None:
    hours = OfficeHours(periods=((7 * 60 + 30, 11 * 60 + 30), (13 * 60, 17 * 60)), same_day_cutoff=15 * 60)
    assert due_at(at(2026, 11, 23, 9), SAME_DAY, cal, hours) == at(2026, 11, 23, 17)
    assert clock_start(at(2026, 11, 23, 7, 40), cal, hours) == at(2026, 11, 23, 7, 40)


def test_uncovered_dates_raise(cal: Calendar) -> None:
    with pytest.raises(CalendarNotCovered):
        due_at(at(2027, 12, 20, 9), StatutoryTime(20, TimeUnit.WORKING_DAYS), cal)


# 766 classification --------------------------------------------------------------------------------


def test_classify_by_due_date() -> None:
    due = at(2026, 11, 26, 17)
    assert classify(at(2026, 11, 25, 16), due) is Timeliness.EARLY
    assert classify(at(2026, 11, 26, 9), due) is Timeliness.ON_TIME
    assert classify(due, due) is Timeliness.ON_TIME
    assert classify(due + 1, due) is Timeliness.LATE


def test_more_than_one_supplement_request_is_late() -> None:
    due = at(2026, 11, 26, 17)
    assert classify(at(2026, 11, 24, 9), due, supplement_requests=1) is Timeliness.EARLY
    assert classify(at(2026, 11, 24, 9), due, supplement_requests=2) is Timeliness.LATE


def test_without_due_date_pauses_are_subtracted(cal: Calendar) -> None:
    three = StatutoryTime(3, TimeUnit.WORKING_DAYS)
    received = at(2026, 11, 23, 10)  # due Thu 26/11 17:00
    end = at(2026, 11, 30, 10)  # Monday after
    assert classify_without_due(received, end, three, [], cal) is Timeliness.LATE
    pause = (at(2026, 11, 24, 8), at(2026, 11, 26, 8))  # 16 working hours → due Mon 30/11 17:00
    once = classify_without_due(received, end, three, [pause], cal, supplement_requests=1)
    assert once is Timeliness.ON_TIME
    twice = classify_without_due(received, end, three, [pause, pause], cal, supplement_requests=2)
    assert twice is Timeliness.LATE


def test_due_dates_print_in_vietnam_time(cal: Calendar) -> None:
    due = due_at(at(2026, 11, 23, 9), SAME_DAY, cal)
    assert local_datetime(due).strftime("%H:%M %d/%m/%Y") == "17:00 23/11/2026"
