"""Projections: the query tables derived from the log by the protocol's deterministic dossier fold.

After each dossier entry is inserted, ``apply`` refolds that dossier from *all* of its entries in the
store (every log, every epoch) with ``protocol.dossier.fold`` and rewrites its rows. ``rebuild`` does the
same for every dossier from an empty slate, so the incremental path and a full refold are the same
computation; ``motcua-node verify`` checks that the stored tables equal a refold (``snapshot``).
``apply_many`` (a group commit) inserts a brand-new dossier's rows directly: its refold is the fold of
its one creating event, and its counters are increments of what a recount would find.

The work runs on the connection's own thread (``*_sync`` functions on the plain ``sqlite3`` connection,
called through ``node.store.run_sync``): one hand-off per call, not one per statement.

Tables: ``dossiers`` (one row per dossier: status, applicant, dates, search keys, the folded state as
JSON), ``timeline`` (applied events), ``conflicts`` (events the fold could not apply), ``counters``
(events per local day and kind).
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

import aiosqlite

from node.store import run_sync
from protocol.calendar import local_date
from protocol.dossier.codes import DossierCode
from protocol.dossier.events import DOSSIER_KINDS
from protocol.dossier.fold import fold, fold_one
from protocol.dossier.state import DossierState, EventRecord
from protocol.dossier.transitions import CREATION_KINDS
from protocol.entry import Entry

__all__ = [
    "PROJECTION_SQL",
    "PROJECTION_TABLES",
    "apply",
    "apply_many",
    "fold_name",
    "rebuild",
    "record_of",
    "snapshot",
    "state_to_json",
]

PROJECTION_SQL = """
CREATE TABLE dossiers (
    code                TEXT PRIMARY KEY,
    unit                TEXT NOT NULL,
    day                 TEXT NOT NULL,            -- reception day in the code, YYYY-MM-DD
    day_seq             INTEGER NOT NULL,
    state               TEXT NOT NULL,            -- internal state (protocol.dossier.status)
    national            INTEGER NOT NULL,         -- national status code 1..10
    procedure_code      TEXT,
    procedure_version   TEXT,
    applicant_name      TEXT,
    name_folded         TEXT,                     -- lower case, diacritics stripped, đ -> d
    id_type             TEXT,
    id_number           TEXT,
    phone               TEXT,
    channel             INTEGER,
    register_book       TEXT,
    register_line       INTEGER,
    received_at         INTEGER,
    due_at              INTEGER,
    adjusted_due_at     INTEGER,
    ended_at            INTEGER,
    timeliness          TEXT,
    supplement_requests INTEGER NOT NULL,
    receiving_node      TEXT,
    created_by          TEXT,
    first_ms            INTEGER NOT NULL,
    last_ms             INTEGER NOT NULL,
    open_conflicts      INTEGER NOT NULL,
    state_json          TEXT NOT NULL
) STRICT;

CREATE INDEX dossiers_received ON dossiers (received_at);
CREATE INDEX dossiers_due ON dossiers (national, adjusted_due_at);
CREATE INDEX dossiers_name ON dossiers (name_folded);
CREATE INDEX dossiers_id ON dossiers (id_number);
CREATE INDEX dossiers_register ON dossiers (register_book, register_line);

CREATE TABLE timeline (
    dossier TEXT NOT NULL,
    pos     INTEGER NOT NULL,
    log     TEXT NOT NULL,
    epoch   INTEGER NOT NULL,
    seq     INTEGER NOT NULL,
    time_ms INTEGER NOT NULL,
    time_n  INTEGER NOT NULL,
    day     TEXT NOT NULL,                          -- local (UTC+7) day of time_ms
    kind    TEXT NOT NULL,
    actor   TEXT,
    hash    TEXT NOT NULL,
    PRIMARY KEY (dossier, pos)
) STRICT;

CREATE INDEX timeline_day ON timeline (day, kind);

CREATE TABLE conflicts (
    hash        TEXT PRIMARY KEY,                   -- entry hash of the event not applied
    dossier     TEXT NOT NULL,
    reason      TEXT NOT NULL,
    kind        TEXT NOT NULL,
    hit_state   TEXT,
    detail      TEXT NOT NULL,
    resolved_by TEXT,
    decision    TEXT
) STRICT;

CREATE INDEX conflicts_dossier ON conflicts (dossier);

CREATE TABLE counters (
    day   TEXT NOT NULL,
    kind  TEXT NOT NULL,
    value INTEGER NOT NULL,
    PRIMARY KEY (day, kind)
) STRICT;
"""

_CHUNK = 500  # host parameters per IN (...) query
PROJECTION_TABLES = ("dossiers", "timeline", "conflicts", "counters")
_ORDER = {
    "dossiers": "code",
    "timeline": "dossier, pos",
    "conflicts": "hash",
    "counters": "day, kind",
}


def fold_name(text: str) -> str:
    """Search key of a name: NFD, combining marks removed, đ/Đ -> d, lower case, spaces collapsed."""
    decomposed = unicodedata.normalize("NFD", text.replace("đ", "d").replace("Đ", "D"))
    stripped = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(stripped.lower().split())


def record_of(entry: Entry) -> EventRecord:
    """The fold's view of an entry."""
    return EventRecord(entry.log, entry.epoch, entry.seq, entry.time, entry.kind, entry.body, entry.hash)


_FIELDS: dict[type, tuple[str, ...] | None] = {}  # dataclass field names per class (None: not one)


def _field_names(cls: type) -> tuple[str, ...] | None:
    try:
        return _FIELDS[cls]
    except KeyError:
        names = tuple(f.name for f in dataclasses.fields(cls)) if dataclasses.is_dataclass(cls) else None
        _FIELDS[cls] = names
        return names


def _plain(value: Any) -> Any:
    names = _field_names(type(value))
    if names is not None:
        return {name: _plain(getattr(value, name)) for name in names}
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def state_to_json(state: DossierState) -> str:
    """The folded state as deterministic JSON (timeline and conflicts live in their own tables)."""
    data = {
        name: [] if name in ("timeline", "conflicts") else _plain(getattr(state, name))
        for name in _field_names(type(state)) or ()
    }
    return json.dumps(data, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def _records(conn: sqlite3.Connection, code: str) -> list[EventRecord]:
    rows = conn.execute("SELECT raw FROM entries WHERE dossier = ?", (code,)).fetchall()
    return [record_of(Entry.parse(bytes(row[0]))) for row in rows]


def _clear(conn: sqlite3.Connection, code: str) -> set[str]:
    rows = conn.execute("SELECT DISTINCT day FROM timeline WHERE dossier = ?", (code,))
    days = {str(row[0]) for row in rows}
    for table, column in (("dossiers", "code"), ("timeline", "dossier"), ("conflicts", "dossier")):
        conn.execute(f"DELETE FROM {table} WHERE {column} = ?", (code,))
    return days


_Rows = tuple[tuple[object, ...], list[tuple[object, ...]], list[tuple[object, ...]]]


def _rows(code: str, state: DossierState) -> _Rows:
    """The ``dossiers`` row, ``timeline`` rows and ``conflicts`` rows of one folded dossier."""
    parsed = DossierCode.parse(code)
    applicant = state.applicant
    first = state.timeline[0].time[0] if state.timeline else 0
    last = state.timeline[-1].time[0] if state.timeline else 0
    created_by = state.timeline[0].actor if state.timeline else None
    dossier = (
        code,
        parsed.unit,
        parsed.day.isoformat(),
        parsed.seq,
        state.state.value,
        int(state.status),
        state.procedure.code if state.procedure else None,
        state.procedure.version if state.procedure else None,
        applicant.name if applicant else None,
        fold_name(applicant.name) if applicant else None,
        applicant.id_type if applicant else None,
        applicant.id_number if applicant else None,
        applicant.phone if applicant else None,
        state.channel,
        state.register.book if state.register else None,
        state.register.line if state.register else None,
        state.received_at,
        state.due_at,
        state.adjusted_due_at,
        state.ended_at,
        state.timeliness.value if state.timeliness else None,
        state.supplement_requests,
        state.receiving_node,
        created_by,
        first,
        last,
        len(state.open_conflicts),
        state_to_json(state),
    )
    timeline = [
        (
            code,
            pos,
            item.log,
            item.epoch,
            item.seq,
            item.time[0],
            item.time[1],
            local_date(item.time[0]).isoformat(),
            item.kind,
            item.actor,
            item.hash,
        )
        for pos, item in enumerate(state.timeline)
    ]
    conflicts = [
        (
            conflict.record.hash,
            code,
            conflict.reason.value,
            conflict.record.kind,
            conflict.state.value if conflict.state else None,
            conflict.detail,
            conflict.resolved_by,
            conflict.decision,
        )
        for conflict in state.conflicts
    ]
    return dossier, timeline, conflicts


_INSERT_DOSSIER = "INSERT INTO dossiers VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
_INSERT_TIMELINE = "INSERT INTO timeline VALUES (?,?,?,?,?,?,?,?,?,?,?)"
_INSERT_CONFLICT = "INSERT INTO conflicts VALUES (?,?,?,?,?,?,?,?)"


def _write(conn: sqlite3.Connection, code: str, state: DossierState) -> set[str]:
    dossier, timeline, conflicts = _rows(code, state)
    conn.execute(_INSERT_DOSSIER, dossier)
    if timeline:
        conn.executemany(_INSERT_TIMELINE, timeline)
    if conflicts:
        conn.executemany(_INSERT_CONFLICT, conflicts)
    return {str(row[7]) for row in timeline}


def _count(conn: sqlite3.Connection, days: Iterable[str]) -> None:
    for day in sorted(set(days)):
        conn.execute("DELETE FROM counters WHERE day = ?", (day,))
        conn.execute(
            "INSERT INTO counters (day, kind, value) SELECT day, kind, count(*) FROM timeline"
            " WHERE day = ? GROUP BY day, kind",
            (day,),
        )


def _refold(conn: sqlite3.Connection, code: str) -> set[str]:
    days = _clear(conn, code)
    state = fold(_records(conn, code)).dossiers.get(code)
    if state is not None:
        days |= _write(conn, code, state)
    return days


def apply_sync(conn: sqlite3.Connection, entry: Entry) -> None:
    """``apply`` on the plain connection (on its own thread, inside the caller's transaction)."""
    if entry.kind not in DOSSIER_KINDS:
        return
    code = entry.body.get("dossier")
    if not isinstance(code, str):
        return
    _count(conn, _refold(conn, code))


async def apply(db: aiosqlite.Connection, entry: Entry) -> None:
    """Projector for the journal: refold the dossier ``entry`` belongs to (inside the transaction)."""
    await run_sync(db, apply_sync, entry)


def apply_many_sync(
    conn: sqlite3.Connection, entries: Sequence[Entry], validated: frozenset[str] = frozenset()
) -> None:
    """``apply_many`` on the plain connection (on its own thread, inside the caller's transaction).

    ``validated``: hashes of entries whose bodies this process has just validated with
    ``validate_body`` (``Journal.append_many``), which the fold of a new dossier need not check again.
    """
    mine = [(e, e.body.get("dossier")) for e in entries if e.kind in DOSSIER_KINDS]
    touched = [(e, code) for e, code in mine if isinstance(code, str)]
    if not touched:
        return
    in_batch = Counter(code for _, code in touched)
    candidates = sorted({c for e, c in touched if e.kind in CREATION_KINDS and in_batch[c] == 1})
    stored: dict[str, int] = {}
    for start in range(0, len(candidates), _CHUNK):
        chunk = candidates[start : start + _CHUNK]
        marks = ",".join("?" * len(chunk))
        rows = conn.execute(
            f"SELECT dossier, count(*) FROM entries WHERE dossier IN ({marks}) GROUP BY dossier", chunk
        ).fetchall()
        stored.update((str(r[0]), int(r[1])) for r in rows)
    fresh = {c for c in candidates if stored.get(c) == 1}
    dossiers: list[tuple[object, ...]] = []
    timeline: list[tuple[object, ...]] = []
    conflicts: list[tuple[object, ...]] = []
    for entry, code in touched:
        if code in fresh:
            state = fold_one(record_of(entry), validated=entry.hash in validated)
            if state is not None:
                d, t, c = _rows(code, state)
                dossiers.append(d)
                timeline.extend(t)
                conflicts.extend(c)
    if dossiers:
        conn.executemany(_INSERT_DOSSIER, dossiers)
    if timeline:
        conn.executemany(_INSERT_TIMELINE, timeline)
        counts = Counter((str(row[7]), str(row[8])) for row in timeline)
        conn.executemany(
            "INSERT INTO counters (day, kind, value) VALUES (?,?,?)"
            " ON CONFLICT (day, kind) DO UPDATE SET value = value + excluded.value",
            [(day, kind, n) for (day, kind), n in sorted(counts.items())],
        )
    if conflicts:
        conn.executemany(_INSERT_CONFLICT, conflicts)
    for _, code in touched:
        if code not in fresh:
            _count(conn, _refold(conn, code))


async def apply_many(db: aiosqlite.Connection, entries: Sequence[Entry]) -> None:
    """``apply`` for several freshly inserted entries (a group commit), with the same result.

    A creating event (``dossier.received``, ``refused``, ``submitted``) that is the only entry of its
    dossier in the whole store is a new dossier: its fold is that one event, so its rows are inserted
    directly (``executemany``) and the counters of its days incremented, instead of a refold and a
    recount. Every other dossier entry is refolded as ``apply`` does, afterwards and in order (a
    recount then sees the new timeline rows, so nothing is counted twice). One hand-off to the
    connection's thread for all of it (``apply_many_sync``).
    """
    await run_sync(db, apply_many_sync, entries)


apply.many = apply_many  # type: ignore[attr-defined]
apply.sync_many = apply_many_sync  # type: ignore[attr-defined]


def rebuild_sync(conn: sqlite3.Connection) -> int:
    for table in PROJECTION_TABLES:
        conn.execute(f"DELETE FROM {table}")
    rows = conn.execute("SELECT DISTINCT dossier FROM entries WHERE dossier IS NOT NULL").fetchall()
    codes = sorted(str(row[0]) for row in rows)
    days: set[str] = set()
    for code in codes:
        days |= _refold(conn, code)
    _count(conn, days)
    row = conn.execute("SELECT count(*) FROM dossiers").fetchone()
    return int(row[0]) if row else 0


async def rebuild(db: aiosqlite.Connection) -> int:
    """Recompute every projection table from the entries alone; return the number of dossiers."""
    return await run_sync(db, rebuild_sync)


async def snapshot(db: aiosqlite.Connection) -> dict[str, list[tuple[object, ...]]]:
    """Every projection row, in a fixed order, for comparing stored tables with a refold."""
    result: dict[str, list[tuple[object, ...]]] = {}
    for table in PROJECTION_TABLES:
        async with db.execute(f"SELECT * FROM {table} ORDER BY {_ORDER[table]}") as cursor:
            result[table] = [tuple(row) async for row in cursor]
    return result
