"""Reading dossiers for staff: today's queue, search, and one dossier in full (with its access log).

Lists mask citizen id numbers (``001*******45``, DOMAIN.md §6); only the detail view shows the full
number, and every detail view is recorded in ``access_log`` (who looked at which dossier, when).
The timeline shows, per event, whether its entry's signature verifies under this node's key for that
epoch ("verified mark"); entries of other logs are shown as received, unverified here.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import aiosqlite

from node.errors import NotFound
from node.journal import epoch_keys
from node.projection import fold_name
from node.store import Store
from protocol.calendar import from_local
from protocol.dossier.citizen_id import mask_id
from protocol.dossier.codes import is_dossier_code
from protocol.dossier.status import InternalState
from protocol.encoding import b64url_decode
from protocol.entry import Entry

__all__ = ["ACCESS_SQL", "DossierDetail", "DossierRow", "OPEN_NATIONAL", "detail", "search", "today"]

ACCESS_SQL = """
CREATE TABLE access_log (
    id      INTEGER PRIMARY KEY,
    at      INTEGER NOT NULL,
    actor   TEXT NOT NULL,
    dossier TEXT NOT NULL,
    action  TEXT NOT NULL
) STRICT;

CREATE INDEX access_log_dossier ON access_log (dossier, at);
"""

OPEN_NATIONAL = (2, 4, 6, 7)
"""Statuses whose statutory clock runs (5, supplement requested, pauses it)."""
_LIST_COLUMNS = (
    "code, state, national, procedure_code, applicant_name, id_type, id_number, received_at,"
    " adjusted_due_at, open_conflicts"
)


@dataclass(frozen=True, slots=True)
class DossierRow:
    """One line of a list: the id number is masked."""

    code: str
    state: str
    state_label: str
    national: int
    procedure_code: str | None
    applicant_name: str | None
    id_masked: str | None
    received_at: int | None
    due_at: int | None
    open_conflicts: int

    @classmethod
    def of(cls, row: tuple[Any, ...]) -> DossierRow:
        code, state, national, procedure, name, _id_type, id_number, received, due, conflicts = row
        return cls(
            code=code,
            state=state,
            state_label=InternalState(state).label,
            national=national,
            procedure_code=procedure,
            applicant_name=name,
            id_masked=mask_id(id_number) if id_number else None,
            received_at=received,
            due_at=due,
            open_conflicts=conflicts,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "state": self.state,
            "status": self.national,
            "status_label": self.state_label,
            "procedure": self.procedure_code,
            "applicant_name": self.applicant_name,
            "id_number_masked": self.id_masked,
            "received_at": self.received_at,
            "due_at": self.due_at,
            "open_conflicts": self.open_conflicts,
        }


async def _rows(
    db: aiosqlite.Connection, where: str, args: tuple[Any, ...], order: str, limit: int
) -> list[DossierRow]:
    sql = f"SELECT {_LIST_COLUMNS} FROM dossiers WHERE {where} ORDER BY {order} LIMIT ?"
    async with db.execute(sql, (*args, limit)) as cursor:
        return [DossierRow.of(tuple(row)) async for row in cursor]


@dataclass(frozen=True, slots=True)
class Today:
    received: list[DossierRow]
    due_soon: list[DossierRow]
    overdue: list[DossierRow]


async def today(store: Store, now: int, day: date, due_soon_ms: int, limit: int = 200) -> Today:
    """Dossiers received on ``day`` (local), open ones due within ``due_soon_ms``, and overdue ones."""
    start, end = from_local(day), from_local(day + timedelta(days=1))
    marks = ",".join("?" * len(OPEN_NATIONAL))
    async with store.read() as db:
        received = await _rows(
            db, "received_at >= ? AND received_at < ?", (start, end), "received_at DESC", limit
        )
        due_soon = await _rows(
            db,
            f"national IN ({marks}) AND adjusted_due_at >= ? AND adjusted_due_at < ?",
            (*OPEN_NATIONAL, now, now + due_soon_ms),
            "adjusted_due_at",
            limit,
        )
        overdue = await _rows(
            db,
            f"national IN ({marks}) AND adjusted_due_at < ?",
            (*OPEN_NATIONAL, now),
            "adjusted_due_at",
            limit,
        )
    return Today(received, due_soon, overdue)


async def search(store: Store, query: str, limit: int = 100) -> list[DossierRow]:
    """By dossier code (or part of it), by id number (exact), or by name with or without diacritics."""
    text = " ".join(query.split())
    if not text:
        return []
    compact = re.sub(r"[\s.\-]", "", text)
    clauses, args = [], []
    if re.fullmatch(r"[0-9A-Za-z.\-]+", text):
        clauses.append("code LIKE ? ESCAPE '\\'")
        args.append("%" + _like(text.upper()) + "%")
    if compact.isdigit() and len(compact) in (9, 12) or re.fullmatch(r"[A-Z0-9]{6,20}", text.upper()):
        clauses.append("id_number = ?")
        args.append(compact if compact.isdigit() else text.upper())
    folded = fold_name(text)
    if folded:
        clauses.append("name_folded LIKE ? ESCAPE '\\'")
        args.append("%" + _like(folded) + "%")
    async with store.read() as db:
        return await _rows(
            db, " OR ".join(clauses), tuple(args), "coalesce(received_at, first_ms) DESC", limit
        )


def _like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


@dataclass(frozen=True, slots=True)
class TimelineItem:
    kind: str
    time_ms: int
    actor: str | None
    log: str
    epoch: int
    seq: int
    hash: str
    verified: bool


@dataclass(frozen=True, slots=True)
class DossierDetail:
    code: str
    state: InternalState
    data: dict[str, Any]
    timeline: list[TimelineItem]
    conflicts: list[dict[str, Any]]

    def to_json(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "state": self.state.value,
            "status": int(self.state.national),
            "status_label": self.state.national.label,
            "state_label": self.state.label,
            "dossier": self.data,
            "timeline": [
                {
                    "kind": t.kind,
                    "time": t.time_ms,
                    "actor": t.actor,
                    "entry": {"log": t.log, "epoch": t.epoch, "seq": t.seq, "hash": t.hash},
                    "verified": t.verified,
                }
                for t in self.timeline
            ],
            "conflicts": self.conflicts,
        }


async def detail(store: Store, node_id: str, code: str, *, actor: str, now: int) -> DossierDetail:
    """One dossier in full; records the access. 404 if unknown."""
    if not is_dossier_code(code):
        raise NotFound(f"Mã hồ sơ {code!r} không đúng định dạng.")
    async with store.read() as db:
        async with db.execute("SELECT state, state_json FROM dossiers WHERE code = ?", (code,)) as cursor:
            row = await cursor.fetchone()
        if row is None:
            raise NotFound(f"Không tìm thấy hồ sơ {code}.")
        keys = await epoch_keys(db)
        async with db.execute(
            "SELECT t.kind, t.time_ms, t.actor, t.log, t.epoch, t.seq, t.hash, e.raw FROM timeline t"
            " JOIN entries e ON e.log = t.log AND e.epoch = t.epoch AND e.seq = t.seq"
            " WHERE t.dossier = ? ORDER BY t.pos",
            (code,),
        ) as cursor:
            items = [
                TimelineItem(
                    r[0], r[1], r[2], r[3], r[4], r[5], r[6], _verified(node_id, keys, bytes(r[7]), r[6])
                )
                async for r in cursor
            ]
        async with db.execute(
            "SELECT hash, reason, kind, hit_state, detail, resolved_by, decision FROM conflicts"
            " WHERE dossier = ? ORDER BY hash",
            (code,),
        ) as cursor:
            names = ("hash", "reason", "kind", "state", "detail", "resolved_by", "decision")
            conflicts = [dict(zip(names, r, strict=True)) async for r in cursor]
    async with store.write() as db:
        await db.execute(
            "INSERT INTO access_log (at, actor, dossier, action) VALUES (?,?,?,?)", (now, actor, code, "view")
        )
    return DossierDetail(code, InternalState(row[0]), json.loads(row[1]), items, conflicts)


def _verified(node_id: str, keys: dict[int, Any], raw: bytes, stored_hash: str) -> bool:
    try:
        entry = Entry.parse(raw)
    except Exception:
        return False
    key = keys.get(entry.epoch) if entry.log == node_id else None
    if key is None or entry.hash != stored_hash:
        return False
    return bool(key.verify(b64url_decode(entry.sig, length=64), entry.signable()))
