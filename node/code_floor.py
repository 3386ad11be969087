"""The code floor of a restored epoch: no dossier code a lost disk may have printed is issued again.

A restore (``restore-backup`` + the new epoch, or ``motcua-node restore``) cannot know the receptions the
lost disk answered after its last sync or backup; their receipts are in citizens' hands. Right after the
new genesis, ``write_floor`` appends ``node.code_floor`` (protocol/dossier/codes.py ``CodeFloor``): on the
restore day, the allocator continues only above (highest number of the block known used that day in any
epoch, or an earlier floor of that day) + ``margin``. The entry is signed and synced, so a further restore
starts past it again. ``floor_seq`` is what the allocator reads (the day's entries only, by time index).
"""

from __future__ import annotations

from datetime import date, datetime, time

import aiosqlite

from node.journal import Journal
from node.store import Store
from protocol.calendar import VN_TZ
from protocol.dossier.codes import (
    CODE_FLOOR_KIND,
    RESTORE_CODE_MARGIN,
    CodeBlock,
    CodeFloor,
    floor_after_restore,
)
from protocol.entry import Entry
from protocol.errors import ProtocolError

__all__ = ["floor_seq", "floor_seq_in", "used_max_in", "write_floor"]

_DAY_MS = 86_400_000


def _day_window(day: date) -> tuple[int, int]:
    """Entry times that may carry a floor of ``day`` (its UTC+7 day, one day of slack each side)."""
    start = int(datetime.combine(day, time(), VN_TZ).timestamp() * 1000)
    return start - _DAY_MS, start + 2 * _DAY_MS


async def floor_seq_in(db: aiosqlite.Connection, unit: str, day: date) -> int | None:
    """The highest floor any epoch set for ``unit`` on ``day`` (``None`` if none)."""
    low, high = _day_window(day)
    best: int | None = None
    async with db.execute(
        "SELECT raw FROM entries WHERE time_ms >= ? AND time_ms < ? AND kind = ?",
        (low, high, CODE_FLOOR_KIND),
    ) as cursor:
        async for (raw,) in cursor:
            try:
                floor = CodeFloor.from_body(Entry.parse(bytes(raw)).body)
            except ProtocolError:
                continue  # a quarantined body names no floor
            if floor.unit == unit and floor.day == day:
                best = floor.seq if best is None else max(best, floor.seq)
    return best


async def floor_seq(store: Store, unit: str, day: date) -> int | None:
    async with store.read() as db:
        return await floor_seq_in(db, unit, day)


async def used_max_in(db: aiosqlite.Connection, unit: str, day: date, block: CodeBlock) -> int | None:
    """The highest number of ``block`` used for ``unit`` on ``day`` in the log (every epoch, every log)."""
    prefix = f"{unit}-{day:%y%m%d}-"
    async with db.execute(
        "SELECT max(CAST(substr(dossier, ?) AS INTEGER)) FROM entries WHERE dossier >= ? AND dossier < ?"
        " AND length(dossier) = ? AND CAST(substr(dossier, ?) AS INTEGER) BETWEEN ? AND ?",
        (len(prefix) + 1, prefix, prefix + "\x7f", len(prefix) + 4, len(prefix) + 1, block.start, block.last),
    ) as cursor:
        row = await cursor.fetchone()
    return int(row[0]) if row is not None and row[0] is not None else None


async def write_floor(
    db: aiosqlite.Connection,
    journal: Journal,
    *,
    unit: str,
    block: CodeBlock,
    day: date,
    margin: int = RESTORE_CODE_MARGIN,
) -> Entry:
    """Append the new epoch's ``node.code_floor`` for ``day`` (inside the caller's write transaction)."""
    seq = floor_after_restore(
        await used_max_in(db, unit, day, block), await floor_seq_in(db, unit, day), block, margin
    )
    return await journal.append(
        db, CODE_FLOOR_KIND, CodeFloor(unit, day, seq, margin).to_body(), actor="system"
    )
