"""Working-day calendar of Vietnamese public agencies, kept as data (DOMAIN.md §5.4–5.5).

Which days are worked is decided each year by the Government (holidays, compensatory days, swapped
Saturdays), so it lives in ``protocol/data/calendar-vn.json`` and the hub may push a newer version
(``Calendar.from_data``). A date outside the covered years raises ``CalendarNotCovered`` instead of
being guessed: a deadline computed on a missing holiday list would be printed on a receipt and
never move again.

Time zone: Asia/Ho_Chi_Minh is UTC+7 all year (no DST), so a fixed offset is exact and needs no tzdata.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone
from enum import StrEnum
from functools import cache
from importlib import resources

from protocol.errors import CalendarInvalid, CalendarNotCovered
from protocol.schema import Fields

__all__ = [
    "Calendar",
    "DayOff",
    "DayOffKind",
    "SwappedWorkday",
    "VN_TZ",
    "YearSchedule",
    "default_calendar",
    "from_local",
    "local_date",
    "local_datetime",
]

VN_TZ = timezone(timedelta(hours=7), "ICT")
"""Indochina Time, the legal time of Vietnam."""

FORMAT = 1
_MAX_TEXT = 300
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def local_datetime(ms: int) -> datetime:
    """An epoch-millisecond UTC instant as an aware datetime in Vietnam time."""
    return (_EPOCH + timedelta(milliseconds=ms)).astimezone(VN_TZ)


def local_date(ms: int) -> date:
    """The calendar date in Vietnam of an epoch-millisecond UTC instant."""
    return local_datetime(ms).date()


def from_local(day: date, hour: int = 0, minute: int = 0) -> int:
    """Epoch milliseconds of ``hour:minute`` on ``day`` in Vietnam time."""
    moment = datetime(day.year, day.month, day.day, hour, minute, tzinfo=VN_TZ)
    return (moment - _EPOCH) // timedelta(milliseconds=1)


class DayOffKind(StrEnum):
    """Why a day that would be worked is not: statutory holiday, nghỉ bù, or a swap for a worked Saturday."""

    HOLIDAY = "holiday"
    COMPENSATORY = "compensatory"
    SWAP = "swap"


@dataclass(frozen=True, slots=True)
class DayOff:
    """A day on which agencies are closed, with its Vietnamese name."""

    day: date
    name: str
    kind: DayOffKind
    note: str | None = None


@dataclass(frozen=True, slots=True)
class SwappedWorkday:
    """A weekend day that is worked in exchange for a bridge day off (ngày làm bù)."""

    day: date
    name: str
    note: str | None = None


@dataclass(frozen=True, slots=True)
class YearSchedule:
    """One year of the calendar; ``provisional`` years are projections awaiting the official decision."""

    year: int
    provisional: bool
    days_off: tuple[DayOff, ...]
    working_days: tuple[SwappedWorkday, ...]
    source: str | None = None
    note: str | None = None


@dataclass(frozen=True, slots=True)
class Calendar:
    """A versioned working-day calendar covering a contiguous run of whole years."""

    version: str
    published: date
    weekend: frozenset[int]
    years: tuple[YearSchedule, ...]
    _off: dict[date, DayOff] = field(init=False, repr=False, compare=False)
    _worked: dict[date, SwappedWorkday] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.years:
            raise CalendarInvalid("a calendar needs at least one year", field="years")
        numbers = [y.year for y in self.years]
        if numbers != list(range(numbers[0], numbers[0] + len(numbers))):
            raise CalendarInvalid(f"years must be consecutive and sorted, got {numbers}", field="years")
        object.__setattr__(self, "_off", {d.day: d for y in self.years for d in y.days_off})
        object.__setattr__(self, "_worked", {w.day: w for y in self.years for w in y.working_days})

    @classmethod
    def from_data(cls, data: Mapping[str, object]) -> Calendar:
        """Build and validate a calendar from its JSON form (the shipped file or a hub push)."""
        return _parse(data)

    def to_data(self) -> dict[str, object]:
        """The JSON form, such that ``Calendar.from_data(c.to_data()) == c``."""
        years: dict[str, object] = {}
        for y in self.years:
            entry: dict[str, object] = {"status": "provisional" if y.provisional else "official"}
            if y.source is not None:
                entry["source"] = y.source
            if y.note is not None:
                entry["note"] = y.note
            entry["days_off"] = [
                _with_note({"date": d.day.isoformat(), "name": d.name, "kind": d.kind.value}, d.note)
                for d in y.days_off
            ]
            entry["working_days"] = [
                _with_note({"date": w.day.isoformat(), "name": w.name}, w.note) for w in y.working_days
            ]
            years[str(y.year)] = entry
        return {
            "format": FORMAT,
            "version": self.version,
            "published": self.published.isoformat(),
            "weekend": sorted(self.weekend),
            "years": years,
        }

    @property
    def first_day(self) -> date:
        """The first covered date (1 January of the first year)."""
        return date(self.years[0].year, 1, 1)

    @property
    def last_day(self) -> date:
        """The last covered date (31 December of the last year)."""
        return date(self.years[-1].year, 12, 31)

    def covers(self, day: date) -> bool:
        """Whether the calendar knows if ``day`` is worked."""
        return self.first_day <= day <= self.last_day

    def covers_ahead(self, today: date, *, months: int = 12) -> bool:
        """Whether every day from ``today`` to ``months`` months later is covered (DOMAIN.md §5.4)."""
        year, month0 = divmod(today.year * 12 + today.month - 1 + months, 12)
        next_month = date(year + (month0 + 1) // 12, (month0 + 1) % 12 + 1, 1)
        horizon = date(year, month0 + 1, min(today.day, (next_month - timedelta(days=1)).day))
        return self.covers(today) and self.covers(horizon)

    def is_provisional(self, day: date) -> bool:
        """Whether ``day`` falls in a year whose schedule is a projection, not the official decision."""
        self._check(day)
        return self.years[day.year - self.years[0].year].provisional

    def day_off(self, day: date) -> DayOff | None:
        """The holiday or day off on ``day``, if any (also when it falls on a weekend)."""
        self._check(day)
        return self._off.get(day)

    def is_working_day(self, day: date) -> bool:
        """Whether agencies work on ``day``: not a day off, and a weekday or a swapped Saturday."""
        self._check(day)
        if day in self._off:
            return False
        return day in self._worked or day.isoweekday() not in self.weekend

    def next_working_day(self, day: date) -> date:
        """The first working day strictly after ``day``."""
        return self.add_working_days(day, 1)

    def add_working_days(self, day: date, count: int) -> date:
        """The ``count``-th working day after ``day`` (``day`` itself not counted; 0 returns ``day``)."""
        if count < 0:
            raise ValueError("count must be >= 0")
        current = day
        while count:
            current += timedelta(days=1)
            if self.is_working_day(current):
                count -= 1
        return current

    def _check(self, day: date) -> None:
        if not self.covers(day):
            raise CalendarNotCovered(
                f"lịch làm việc (phiên bản {self.version}) chưa có dữ liệu ngày {day.isoformat()}; "
                f"chỉ có từ {self.first_day.isoformat()} đến {self.last_day.isoformat()}"
            )


@cache
def default_calendar() -> Calendar:
    """The calendar shipped with this package (``protocol/data/calendar-vn.json``)."""
    text = resources.files("protocol").joinpath("data/calendar-vn.json").read_text(encoding="utf-8")
    return Calendar.from_data(json.loads(text))


def _with_note(entry: dict[str, object], note: str | None) -> dict[str, object]:
    if note is not None:
        entry["note"] = note
    return entry


def _fail(reason: str, where: str) -> CalendarInvalid:
    return CalendarInvalid(reason, field=where or None)


def _parse(data: Mapping[str, object]) -> Calendar:
    top = Fields.of(data, "", _fail, required={"format", "version", "published", "weekend", "years"})
    top.int_choice("format", {FORMAT})
    weekend_list = [value for _, value in top.items("weekend", min_items=1, max_items=3)]
    if not all(type(d) is int and 1 <= d <= 7 for d in weekend_list) or len(set(weekend_list)) != len(
        weekend_list
    ):
        raise _fail("must be distinct ISO weekdays 1 (Monday) .. 7 (Sunday)", "weekend")
    weekend = frozenset(d for d in weekend_list if isinstance(d, int))
    years_raw = top.raw("years")
    if not isinstance(years_raw, Mapping) or not years_raw or not all(isinstance(k, str) for k in years_raw):
        raise _fail("must be a non-empty object keyed by year", "years")
    years = []
    for key in sorted(years_raw):
        if not re.fullmatch(r"20\d\d", key):
            raise _fail(f"year key {key!r} is not a year 2000..2099", "years")
        years.append(_year(int(key), years_raw[key], weekend))
    return Calendar(
        version=top.text("version", max_len=64),
        published=top.date("published"),
        weekend=weekend,
        years=tuple(years),
    )


def _year(year: int, raw: object, weekend: frozenset[int]) -> YearSchedule:
    path = f"years.{year}"
    fields = Fields.of(
        raw, path, _fail, required={"status", "days_off", "working_days"}, optional={"source", "note"}
    )
    status = fields.choice("status", {"official", "provisional"})
    seen: set[date] = set()
    days_off = []
    for where, item in fields.items("days_off", max_items=60):
        entry = Fields.of(item, where, _fail, required={"date", "name", "kind"}, optional={"note"})
        days_off.append(
            DayOff(
                day=_day_in(entry, year, seen),
                name=entry.text("name", max_len=_MAX_TEXT),
                kind=DayOffKind(entry.choice("kind", {k.value for k in DayOffKind})),
                note=entry.opt_text("note", max_len=_MAX_TEXT),
            )
        )
    working = []
    for where, item in fields.items("working_days", max_items=60):
        entry = Fields.of(item, where, _fail, required={"date", "name"}, optional={"note"})
        day = _day_in(entry, year, seen)
        if day.isoweekday() not in weekend:
            raise _fail(
                f"{day.isoformat()} is already a working weekday; only weekend days can be swapped in",
                entry.where("date"),
            )
        working.append(
            SwappedWorkday(
                day=day,
                name=entry.text("name", max_len=_MAX_TEXT),
                note=entry.opt_text("note", max_len=_MAX_TEXT),
            )
        )
    return YearSchedule(
        year=year,
        provisional=status == "provisional",
        days_off=tuple(sorted(days_off, key=lambda d: d.day)),
        working_days=tuple(sorted(working, key=lambda w: w.day)),
        source=fields.opt_text("source", max_len=_MAX_TEXT),
        note=fields.opt_text("note", max_len=_MAX_TEXT),
    )


def _day_in(entry: Fields, year: int, seen: set[date]) -> date:
    day = entry.date("date")
    if day.year != year:
        raise _fail(f"{day.isoformat()} is not in year {year}", entry.where("date"))
    if day in seen:
        raise _fail(f"{day.isoformat()} is listed twice", entry.where("date"))
    seen.add(day)
    return day
