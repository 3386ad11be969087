"""Due dates (thời hạn trả kết quả) and the on-time rules of the national 766 index (DOMAIN.md §5.3–5.4).

All instants are epoch milliseconds UTC; days and hours are read in Vietnam time (UTC+7).

Rules implemented (SPEC-dossier.md §4 states them for other implementations):

- **Working time** is the agency's office hours on working days of the calendar: 08:00–12:00 and
  13:00–17:00 by default, i.e. 8 hours per working day, the figure the 766 tooling uses to convert
  hours to days. Hour-based limits consume only working time.
- **Clock start**: a dossier received outside working time (evening, lunch break, weekend, holiday,
  an online submission at night) counts from the start of the next working period.
- ``same_day``: received on a working day at or before 15:00 → due at the end of that day (17:00);
  after 15:00, or on a non-working day → due at the end of the next working day.
- ``working_days`` (N ngày làm việc): the reception day is not counted (Bộ luật Dân sự 2015, Điều 147);
  due at the end of the N-th working day after it.
- ``calendar_days`` (N ngày): due at the end of the day N calendar days after the reception day; if that
  day is not a working day, at the end of the next working day (Điều 148).
- ``hours``: N hours of working time after the clock start.
- A due date is computed once at reception and stored; only a pause (supplement request, and financial
  obligations where the procedure says so) extends it, by ``extend_for_pause``, recorded in an event.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from enum import StrEnum

from protocol.calendar import Calendar, from_local, local_date
from protocol.errors import DomainError

__all__ = [
    "OFFICE_HOURS",
    "OfficeHours",
    "StatutoryTime",
    "TimeUnit",
    "Timeliness",
    "add_working_ms",
    "classify",
    "classify_without_due",
    "clock_start",
    "due_at",
    "extend_for_pause",
    "working_ms",
]

_HOUR_MS = 3_600_000
_DAY_MS = 24 * _HOUR_MS
_MINUTE_MS = 60_000


class TimeUnit(StrEnum):
    """Unit of a statutory time limit."""

    HOURS = "hours"
    WORKING_DAYS = "working_days"
    CALENDAR_DAYS = "calendar_days"
    SAME_DAY = "same_day"


_LIMITS = {
    TimeUnit.HOURS: (1, 2000),
    TimeUnit.WORKING_DAYS: (1, 730),
    TimeUnit.CALENDAR_DAYS: (1, 1095),
    TimeUnit.SAME_DAY: (0, 0),
}


@dataclass(frozen=True, slots=True)
class StatutoryTime:
    """A procedure's statutory resolution time: ``value`` ``unit``s (``same_day`` takes value 0)."""

    value: int
    unit: TimeUnit

    def __post_init__(self) -> None:
        low, high = _LIMITS[self.unit]
        if type(self.value) is not int or not low <= self.value <= high:
            raise DomainError(
                f"a {self.unit.value} limit must be an integer in {low}..{high}, got {self.value!r}"
            )


@dataclass(frozen=True, slots=True)
class OfficeHours:
    """Working periods of a day as (start, end) minutes after local midnight, and the same-day cut-off."""

    periods: tuple[tuple[int, int], ...] = ((8 * 60, 12 * 60), (13 * 60, 17 * 60))
    same_day_cutoff: int = 15 * 60

    def __post_init__(self) -> None:
        previous_end = 0
        for start, end in self.periods:
            if not previous_end <= start < end <= 24 * 60:
                raise DomainError(f"office hours must be increasing, non-overlapping periods: {self.periods}")
            previous_end = end
        if not self.periods or not self.periods[0][0] <= self.same_day_cutoff <= self.periods[-1][1]:
            raise DomainError("the same-day cut-off must fall within office hours")

    @property
    def day_end(self) -> int:
        """Minute of the day at which the last working period ends (17:00 by default)."""
        return self.periods[-1][1]

    def windows(self, day: date) -> Iterator[tuple[int, int]]:
        """The working periods of ``day`` as (start ms, end ms); the caller checks it is a working day."""
        midnight = from_local(day)
        for start, end in self.periods:
            yield midnight + start * _MINUTE_MS, midnight + end * _MINUTE_MS

    def end_of(self, day: date) -> int:
        """The instant ``day``'s working time ends."""
        return from_local(day) + self.day_end * _MINUTE_MS


OFFICE_HOURS = OfficeHours()


class Timeliness(StrEnum):
    """Result of the 766 comparison of a dossier's end of processing with its due date."""

    EARLY = "early"
    ON_TIME = "on_time"
    LATE = "late"


def clock_start(received_at: int, calendar: Calendar, hours: OfficeHours = OFFICE_HOURS) -> int:
    """When the statutory clock starts: ``received_at`` if in working time, else the next working period."""
    day = local_date(received_at)
    while True:
        if calendar.is_working_day(day):
            for start, end in hours.windows(day):
                if received_at < end:
                    return max(received_at, start)
        day += timedelta(days=1)


def working_ms(start: int, end: int, calendar: Calendar, hours: OfficeHours = OFFICE_HOURS) -> int:
    """Working time (ms) inside the interval [start, end)."""
    total = 0
    day = local_date(start)
    last = local_date(end) if end > start else day
    while day <= last and end > start:
        if calendar.is_working_day(day):
            for a, b in hours.windows(day):
                total += max(0, min(b, end) - max(a, start))
        day += timedelta(days=1)
    return total


def add_working_ms(start: int, amount: int, calendar: Calendar, hours: OfficeHours = OFFICE_HOURS) -> int:
    """The earliest instant at which ``amount`` ms of working time have passed since ``start``."""
    if amount < 0:
        raise ValueError("amount must be >= 0")
    if amount == 0:
        return start
    day = local_date(start)
    while True:
        if calendar.is_working_day(day):
            for a, b in hours.windows(day):
                begin = max(a, start)
                if begin < b:
                    if amount <= b - begin:
                        return begin + amount
                    amount -= b - begin
        day += timedelta(days=1)


def due_at(
    received_at: int, limit: StatutoryTime, calendar: Calendar, hours: OfficeHours = OFFICE_HOURS
) -> int:
    """The due date (epoch ms) of a dossier received at ``received_at`` under ``limit`` (module rules)."""
    if limit.unit is TimeUnit.SAME_DAY:
        day = local_date(received_at)
        cutoff = from_local(day) + hours.same_day_cutoff * _MINUTE_MS
        if calendar.is_working_day(day) and received_at <= cutoff:
            return hours.end_of(day)
        return hours.end_of(calendar.next_working_day(day))
    start = clock_start(received_at, calendar, hours)
    if limit.unit is TimeUnit.HOURS:
        return add_working_ms(start, limit.value * _HOUR_MS, calendar, hours)
    first = local_date(start)
    if limit.unit is TimeUnit.WORKING_DAYS:
        return hours.end_of(calendar.add_working_days(first, limit.value))
    last = first + timedelta(days=limit.value)
    if not calendar.is_working_day(last):
        last = calendar.next_working_day(last)
    return hours.end_of(last)


def extend_for_pause(
    due: int,
    pause_start: int,
    pause_end: int,
    unit: TimeUnit,
    calendar: Calendar,
    hours: OfficeHours = OFFICE_HOURS,
) -> int:
    """The due date pushed back by a pause [pause_start, pause_end) during which the clock stood still.

    For working-time units the working time inside the pause is added after ``due``. For calendar-day
    limits every started calendar day of the pause is added, and the result again moves off a non-working
    day (a holiday move already contained in ``due`` is kept, which can only favour the applicant's wait
    by the length of that holiday run; SPEC-dossier.md §4).
    """
    if pause_end <= pause_start:
        return due
    if unit is TimeUnit.CALENDAR_DAYS:
        days = -(-(pause_end - pause_start) // _DAY_MS)
        last = local_date(due) + timedelta(days=days)
        if not calendar.is_working_day(last):
            last = calendar.next_working_day(last)
        return hours.end_of(last)
    return add_working_ms(due, working_ms(pause_start, pause_end, calendar, hours), calendar, hours)


def classify(end_at: int, due: int, *, supplement_requests: int = 0) -> Timeliness:
    """766 rule with a due date: more than one supplement request is late; ending after ``due`` is late;
    ending on a calendar day before the due day is early; otherwise on time (ended on the due day, in time).
    """
    if supplement_requests > 1 or end_at > due:
        return Timeliness.LATE
    if local_date(end_at) < local_date(due):
        return Timeliness.EARLY
    return Timeliness.ON_TIME


def classify_without_due(
    received_at: int,
    end_at: int,
    limit: StatutoryTime,
    supplement_pauses: Iterable[tuple[int, int]],
    calendar: Calendar,
    *,
    supplement_requests: int = 0,
    hours: OfficeHours = OFFICE_HOURS,
) -> Timeliness:
    """766 rule for a dossier synced without a due date: elapsed time minus supplement time against the limit.

    Equivalent to computing the due date from the reception time and extending it by each completed
    supplement pause (start, end), then applying ``classify``.
    """
    due = due_at(received_at, limit, calendar, hours)
    for start, end in supplement_pauses:
        due = extend_for_pause(due, start, end, limit.unit, calendar, hours)
    return classify(end_at, due, supplement_requests=supplement_requests)
