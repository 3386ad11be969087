"""Working-day calendar: the shipped 2025–2027 data, lookups, coverage and validation of pushed data."""

from __future__ import annotations

import copy
from datetime import date

import pytest

from protocol.calendar import (
    VN_TZ,
    Calendar,
    DayOffKind,
    default_calendar,
    from_local,
    local_date,
    local_datetime,
)
from protocol.errors import CalendarInvalid, CalendarNotCovered
from tests.protocol.helpers import DELETE, set_path


@pytest.fixture(scope="module")
def cal() -> Calendar:
    return default_calendar()


@pytest.mark.parametrize("day", [date(2026, 2, d) for d in range(14, 23)])
def test_tet_2026_is_nine_days_off(cal: Calendar, day: date) -> None:
    assert not cal.is_working_day(day)


def test_tet_2026_edges_are_worked(cal: Calendar) -> None:
    assert cal.is_working_day(date(2026, 2, 13))
    assert cal.is_working_day(date(2026, 2, 23))
    assert cal.next_working_day(date(2026, 2, 13)) == date(2026, 2, 23)


def test_gio_to_2026_on_sunday_gives_monday_off(cal: Calendar) -> None:
    sunday = cal.day_off(date(2026, 4, 26))
    assert sunday is not None and sunday.kind is DayOffKind.HOLIDAY and "Giỗ Tổ" in sunday.name
    monday = cal.day_off(date(2026, 4, 27))
    assert monday is not None and monday.kind is DayOffKind.COMPENSATORY
    assert not cal.is_working_day(date(2026, 4, 27))
    assert cal.is_working_day(date(2026, 4, 28))


@pytest.mark.parametrize(
    "day", [date(2026, 1, 1), date(2026, 4, 30), date(2026, 5, 1), date(2026, 9, 1), date(2026, 9, 2)]
)
def test_2026_fixed_holidays(cal: Calendar, day: date) -> None:
    assert not cal.is_working_day(day)
    off = cal.day_off(day)
    assert off is not None and off.name


def test_national_day_has_an_adjacent_day_each_year(cal: Calendar) -> None:
    for year in (2025, 2026, 2027):
        days = [d for d in (date(year, 9, 1), date(year, 9, 3)) if cal.day_off(d) is not None]
        assert len(days) == 1, year
        assert not cal.is_working_day(date(year, 9, 2))


def test_2026_new_year_swap_with_saturday_10_january(cal: Calendar) -> None:
    off = cal.day_off(date(2026, 1, 2))
    assert off is not None and off.kind is DayOffKind.SWAP
    assert cal.is_working_day(date(2026, 1, 10))  # a Saturday, worked in exchange
    assert not cal.is_working_day(date(2026, 1, 17))  # an ordinary Saturday


def test_2025_schedule(cal: Calendar) -> None:
    assert all(not cal.is_working_day(date(2025, 1, d)) for d in range(25, 32))
    assert not cal.is_working_day(date(2025, 2, 1)) and not cal.is_working_day(date(2025, 2, 2))
    assert cal.is_working_day(date(2025, 2, 3))
    assert cal.is_working_day(date(2025, 4, 26))  # Saturday worked for Friday 2/5
    assert not cal.is_working_day(date(2025, 5, 2))
    assert not cal.is_working_day(date(2025, 4, 7))  # Giỗ Tổ


def test_weekends_and_plain_weekdays(cal: Calendar) -> None:
    assert cal.is_working_day(date(2026, 11, 23))  # Monday
    assert not cal.is_working_day(date(2026, 11, 21))  # Saturday
    assert not cal.is_working_day(date(2026, 11, 22))  # Sunday


def test_2027_is_provisional_and_2026_official(cal: Calendar) -> None:
    assert cal.is_provisional(date(2027, 6, 1))
    assert not cal.is_provisional(date(2026, 6, 1))
    assert not cal.is_working_day(date(2027, 5, 3))  # 1/5/2027 is a Saturday


def test_add_working_days(cal: Calendar) -> None:
    assert cal.add_working_days(date(2026, 4, 24), 0) == date(2026, 4, 24)
    assert cal.add_working_days(date(2026, 4, 24), 1) == date(2026, 4, 28)
    assert cal.add_working_days(date(2026, 4, 24), 3) == date(2026, 5, 4)
    with pytest.raises(ValueError):
        cal.add_working_days(date(2026, 4, 24), -1)


def test_coverage(cal: Calendar) -> None:
    assert cal.first_day == date(2025, 1, 1) and cal.last_day == date(2027, 12, 31)
    assert cal.covers(date(2027, 12, 31)) and not cal.covers(date(2028, 1, 1))
    assert cal.covers_ahead(date(2026, 11, 22))
    assert cal.covers_ahead(date(2026, 12, 31))
    assert not cal.covers_ahead(date(2027, 1, 1))
    assert not cal.covers_ahead(date(2024, 6, 1))
    with pytest.raises(CalendarNotCovered, match="2028-01-03"):
        cal.is_working_day(date(2028, 1, 3))
    with pytest.raises(CalendarNotCovered):
        cal.add_working_days(date(2027, 12, 30), 5)


def test_time_zone_is_fixed_utc_plus_7() -> None:
    ms = from_local(date(2026, 2, 13), 15, 1)
    assert ms == 1_770_969_660_000
    assert local_datetime(ms).utcoffset() == VN_TZ.utcoffset(None)
    assert local_datetime(ms).hour == 15 and local_datetime(ms).minute == 1
    assert local_date(from_local(date(2026, 3, 1)) - 1) == date(2026, 2, 28)
    assert local_datetime(ms + 123).microsecond == 123_000


def test_round_trip_through_data(cal: Calendar) -> None:
    assert Calendar.from_data(cal.to_data()) == cal


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        ("version", DELETE, "version"),
        ("format", 2, "format"),
        ("extra", 1, "extra"),
        ("published", "20261120", "published"),
        ("weekend", [6, 6], "weekend"),
        ("weekend", [0], "weekend"),
        ("years", {}, "years"),
        ("years.2026", DELETE, "years"),
        ("years.1999", {}, "years"),
        ("years.2026.status", "draft", "years.2026.status"),
        ("years.2026.days_off.0.date", "2026-02-30", "years.2026.days_off[0].date"),
        ("years.2026.days_off.0.date", "2025-12-31", "years.2026.days_off[0].date"),
        ("years.2026.days_off.1.date", "2026-01-01", "years.2026.days_off[1].date"),
        ("years.2026.days_off.0.kind", "party", "years.2026.days_off[0].kind"),
        ("years.2026.days_off.0.name", "Te\u0302t", "years.2026.days_off[0].name"),
        ("years.2026.days_off.0.name", " ", "years.2026.days_off[0].name"),
        ("years.2026.working_days.0.date", "2026-01-12", "years.2026.working_days[0].date"),
        ("years.2026.working_days.0.name", DELETE, "years.2026.working_days[0].name"),
    ],
)
def test_invalid_data_names_the_field(cal: Calendar, path: str, value: object, field: str) -> None:
    data = copy.deepcopy(cal.to_data())
    set_path(data, path, value)
    with pytest.raises(CalendarInvalid) as info:
        Calendar.from_data(data)
    assert info.value.field == field


def test_pushed_calendar_can_add_a_holiday(cal: Calendar) -> None:
    data = copy.deepcopy(cal.to_data())
    holiday = {"date": "2026-11-24", "name": "Ngày Văn hóa Việt Nam", "kind": "holiday"}
    data["years"]["2026"]["days_off"].append(holiday)  # type: ignore[index]
    data["version"] = "2026.3"
    pushed = Calendar.from_data(data)
    assert not pushed.is_working_day(date(2026, 11, 24))
    assert cal.is_working_day(date(2026, 11, 24))
