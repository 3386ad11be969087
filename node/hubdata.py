"""The procedure catalog and holiday calendar in force at a node: the newest valid ones the hub broadcast.

The hub publishes ``hub.catalog`` ``{version, catalog}`` and ``hub.calendar`` ``{version, calendar}`` in its
broadcast log ``hub`` (``motcua-central publish``). The node stores pulled entries like any hub entry (so
they survive a restart) and, after a round that pulled something and when it opens, ``apply_hub_data``
reads them back, newest first, and puts in force for NEW dossiers the newest that
``Catalog.from_data`` / ``Calendar.from_data`` accept (an invalid one is logged and skipped); with none,
the built-in data stays in force.

- The catalog in force keeps every older catalog (earlier hub ones, then the built-in) behind it for
  ``version_of``: a dossier received under a procedure version the new catalog dropped still finds it.
- The calendar in force is the hub's, with the earlier years of the built-in calendar that precede it
  kept (a pause of an old dossier can still be counted); never later built-in years, so a hub calendar
  that ends too soon shows as such. A dossier's due date, fixed at reception in
  its signed entry, never moves.
- ``calendar_warning`` is the UI's warning when the calendar does not cover 12 months ahead.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date
from typing import Any

from protocol import Entry
from protocol.calendar import Calendar, default_calendar
from protocol.catalog import Catalog, default_catalog
from protocol.errors import DomainError, UnknownProcedure

__all__ = ["CatalogInForce", "HubData", "apply_hub_data", "calendar_warning", "load_hub_data"]

log = logging.getLogger("motcua.node.hubdata")


@dataclass(frozen=True, slots=True)
class CatalogInForce(Catalog):
    """A catalog whose ``version_of`` also finds versions of the catalogs it replaced."""

    older: tuple[Catalog, ...] = ()

    def version_of(self, code: str, version: str) -> Any:
        try:
            return Catalog.version_of(self, code, version)
        except UnknownProcedure:
            for catalog in self.older:
                try:
                    return catalog.version_of(code, version)
                except UnknownProcedure:
                    continue
            raise


@dataclass(frozen=True, slots=True)
class HubData:
    catalog: Catalog | None  # None: no valid hub catalog (the built-in stays)
    calendar: Calendar | None
    skipped: tuple[str, ...] = ()  # positions of hub entries that did not validate


async def load_hub_data(store: Any, base_catalog: Catalog | None = None) -> HubData:
    """Read the stored ``hub.catalog`` / ``hub.calendar`` entries and build what is in force."""
    rows = await store.fetchall(
        "SELECT raw FROM entries WHERE log = 'hub' AND epoch = 1 AND kind IN ('hub.catalog', 'hub.calendar') "
        "ORDER BY seq"
    )
    catalogs: list[Catalog] = []
    calendar: Calendar | None = None
    skipped: list[str] = []
    for (raw,) in rows:
        entry = Entry.parse(bytes(raw))
        try:
            if entry.kind == "hub.catalog":
                catalogs.append(Catalog.from_data(entry.body["catalog"]))
            else:
                calendar = Calendar.from_data(entry.body["calendar"])
        except (DomainError, KeyError, TypeError, ValueError) as exc:
            log.warning(
                "hub data hub/1:%d (%s) is not valid, kept out of force: %s", entry.seq, entry.kind, exc
            )
            skipped.append(f"hub/1:{entry.seq}")
    catalog: Catalog | None = None
    if catalogs:
        newest = catalogs[-1]
        older = (*reversed(catalogs[:-1]), base_catalog or default_catalog())
        catalog = CatalogInForce(newest.version, newest.published, newest.procedures, older)
    if calendar is not None:
        calendar = _extended(calendar, default_calendar())
    return HubData(catalog, calendar, tuple(skipped))


def _extended(new: Calendar, base: Calendar) -> Calendar:
    """``new`` with the years of ``base`` just before it (consecutive years only)."""
    before = [y for y in base.years if y.year < new.years[0].year]
    if not before:
        return new
    years = [*before, *new.years]
    numbers = [y.year for y in years]
    if numbers != list(range(numbers[0], numbers[0] + len(numbers))):
        return new
    return Calendar(new.version, new.published, new.weekend, tuple(years))


async def apply_hub_data(node: Any, base_catalog: Catalog | None = None) -> HubData:
    """Put the newest valid hub catalog and calendar in force at ``node``'s desk (and its receipts)."""
    data = await load_hub_data(node.store, base_catalog)
    desk = node.desk
    if data.catalog is not None and (
        desk.catalog.version != data.catalog.version or not isinstance(desk.catalog, CatalogInForce)
    ):
        desk.catalog = data.catalog
        receipts = getattr(desk, "receipts", None)
        if receipts is not None and hasattr(receipts, "catalog"):
            receipts.catalog = data.catalog
        log.info("catalog %s from the hub in force for new dossiers", data.catalog.version)
    if data.calendar is not None and desk.calendar != data.calendar:
        desk.calendar = data.calendar
        log.info("calendar %s from the hub in force for new dossiers", data.calendar.version)
    return data


def calendar_warning(calendar: Calendar, today: date) -> str | None:
    """The Vietnamese warning when ``calendar`` does not cover the next 12 months (DOMAIN.md §5.4)."""
    if calendar.covers_ahead(today):
        return None
    return (
        f"Lịch ngày làm việc (phiên bản {calendar.version}) chỉ có dữ liệu đến ngày "
        f"{calendar.last_day.strftime('%d/%m/%Y')}, chưa đủ 12 tháng tới. Hạn trả kết quả của hồ sơ "
        "tiếp nhận sau ngày đó không tính được: đề nghị trung tâm gửi lịch nghỉ lễ mới."
    )
