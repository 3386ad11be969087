"""Where a finished scan goes: the desk's open dossier, or the inbox of unassigned scans.

A desk (quầy) has at most one *open dossier*, set from the dossier page ("Quét vào hồ sơ này") together
with the checklist document the next scans are of (or "chưa phân loại"). ``ScanRouter`` is the
``on_scan`` callback of the node's ``ScanIntake``: it runs inside the transaction that registers the
scan's blobs and either appends a signed ``dossier.attachment`` entry (actor: the clerk who opened the
dossier for scanning) or puts the scan in the inbox. An open dossier lapses ``session_ms`` after it was
opened or last received a scan, so a forgotten one does not swallow the next applicant's papers.

From the inbox, staff attach a scan to a dossier (same entry) or discard it. A discard is recorded in
the signed log as a ``scan.discarded`` entry: the protocol's ``dossier.attachment_discarded`` withdraws a
scan that *was* attached to a dossier, and an inbox scan never was. Unknown kinds are carried by the
hub and ignored by the folds (SPEC §2), so the discard is auditable without touching any dossier.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

import aiosqlite

from node.errors import Conflict, InvalidInput, NotFound
from node.journal import Journal
from node.scan_inbox import RegisteredScan, add_unassigned, attach_unassigned, discard_unassigned
from node.store import Store
from protocol.dossier import builders
from protocol.dossier.codes import is_dossier_code
from protocol.dossier.events import UNCLASSIFIED_DOCUMENT, Kind
from protocol.dossier.model import BlobManifest

__all__ = [
    "DESKS_SQL",
    "SCAN_DISCARDED",
    "DeskSession",
    "ScanRouter",
    "attach_from_inbox",
    "attachment_documents",
    "close_desk",
    "desk_sessions",
    "discard_from_inbox",
    "log_scan_access",
    "open_desk",
]

SCAN_DISCARDED = "scan.discarded"
log = logging.getLogger(__name__)

DESKS_SQL = """
-- The open dossier of each desk: scans from that desk's scanners attach to it.
CREATE TABLE IF NOT EXISTS desks (
    desk       TEXT PRIMARY KEY,
    dossier    TEXT NOT NULL,
    document   TEXT NOT NULL,        -- checklist document name, or 'chưa phân loại'
    opened_by  TEXT NOT NULL,        -- actor of the attachment entries
    opened_at  INTEGER NOT NULL,     -- unix ms
    touched_at INTEGER NOT NULL      -- opened or last scan attached; lapses scan_session_minutes later
) STRICT;

-- Who opened or downloaded which scan (thumbnails are part of viewing the dossier page).
CREATE TABLE IF NOT EXISTS scan_access (
    id      INTEGER PRIMARY KEY,
    at      INTEGER NOT NULL,
    actor   TEXT NOT NULL,
    sha256  TEXT NOT NULL,
    dossier TEXT,
    action  TEXT NOT NULL
) STRICT;
CREATE INDEX IF NOT EXISTS scan_access_sha256 ON scan_access (sha256, at);
"""


@dataclass(frozen=True, slots=True)
class DeskSession:
    """A desk's open dossier, and whether it is still live at the time it was read."""

    desk: str
    dossier: str
    document: str
    opened_by: str
    opened_at: int
    touched_at: int
    live: bool


async def _dossier_state(db: aiosqlite.Connection, code: str) -> dict[str, Any]:
    if not is_dossier_code(code):
        raise InvalidInput({"dossier": "Mã hồ sơ không đúng định dạng."})
    async with db.execute("SELECT state_json FROM dossiers WHERE code = ?", (code,)) as cur:
        row = await cur.fetchone()
    if row is None:
        raise NotFound(f"Không tìm thấy hồ sơ {code}.")
    state: dict[str, Any] = json.loads(row[0])
    return state


def attachment_documents(state: dict[str, Any]) -> list[str]:
    """Documents a scan of this dossier can be filed under: its checklist, then "chưa phân loại"."""
    names = [str(d["name"]) for d in state.get("documents") or () if d.get("name")]
    return [*dict.fromkeys(names), UNCLASSIFIED_DOCUMENT]


def _check_document(state: dict[str, Any], document: str) -> str:
    document = " ".join(document.split())
    if document not in attachment_documents(state):
        raise InvalidInput({"document": "Vui lòng chọn giấy tờ của hồ sơ hoặc “chưa phân loại”."})
    return document


async def open_desk(
    store: Store, *, desk: str, dossier: str, document: str, actor: str, now: int, desks: set[str]
) -> DeskSession:
    """Set ``dossier`` as the open dossier of ``desk`` (replacing any other)."""
    if desk not in desks:
        raise InvalidInput({"desk": "Quầy này chưa có máy quét được cấu hình."})
    async with store.write() as db:
        document = _check_document(await _dossier_state(db, dossier), document)
        await db.execute(
            "INSERT INTO desks (desk, dossier, document, opened_by, opened_at, touched_at)"
            " VALUES (?,?,?,?,?,?) ON CONFLICT (desk) DO UPDATE SET dossier=excluded.dossier,"
            " document=excluded.document, opened_by=excluded.opened_by, opened_at=excluded.opened_at,"
            " touched_at=excluded.touched_at",
            (desk, dossier, document, actor, now, now),
        )
    return DeskSession(desk, dossier, document, actor, now, now, True)


async def close_desk(store: Store, *, desk: str, dossier: str | None = None) -> bool:
    """Stop scanning into the desk's open dossier (only if it is ``dossier``, when given)."""
    async with store.write() as db:
        if dossier is None:
            cur = await db.execute("DELETE FROM desks WHERE desk = ?", (desk,))
        else:
            cur = await db.execute("DELETE FROM desks WHERE desk = ? AND dossier = ?", (desk, dossier))
        return cur.rowcount > 0


async def desk_sessions(db: aiosqlite.Connection, *, now: int, session_ms: int) -> list[DeskSession]:
    """Every desk's open dossier (lapsed ones marked ``live=False``)."""
    async with db.execute(
        "SELECT desk, dossier, document, opened_by, opened_at, touched_at FROM desks ORDER BY desk"
    ) as cur:
        return [DeskSession(*row, live=now - row[5] <= session_ms) async for row in cur]


def _attachment_body(scan: RegisteredScan, dossier: str, document: str, actor: str) -> dict[str, object]:
    manifest = scan.pdf.manifest()
    note = f"Bản quét “{scan.display_name}” ({scan.pages} trang), máy quét {scan.scanner}, quầy {scan.desk}."
    if scan.original.sha256 != scan.pdf.sha256:
        note += f" Tệp gốc {scan.original.media_type}, sha256 {scan.original.sha256}."
    return builders.attachment_body(
        dossier=dossier,
        actor=actor,
        document=document,
        manifest=BlobManifest(
            sha256=manifest["sha256"],
            size=manifest["size"],
            media_type=manifest["media_type"],
            pages=manifest["pages"],
            chunks=tuple(manifest["chunks"]),
            chunk_size=manifest["chunk_size"],
        ),
        note=note,
    )


async def _already_attached(db: aiosqlite.Connection, dossier: str, sha256: str) -> bool:
    state = await _dossier_state(db, dossier)
    return any(a.get("sha256") == sha256 for a in state.get("attachments") or ())


@dataclass(slots=True)
class ScanRouter:
    """The node's ``on_scan``: attach to the desk's live open dossier, else put in the inbox."""

    journal: Journal
    session_ms: int

    async def __call__(self, db: aiosqlite.Connection, scan: RegisteredScan) -> None:
        async with db.execute(
            "SELECT dossier, document, opened_by, touched_at FROM desks WHERE desk = ?", (scan.desk,)
        ) as cur:
            row = await cur.fetchone()
        now = self.journal.wall()
        if row is None or now - int(row[3]) > self.session_ms:
            await add_unassigned(db, scan)
            return
        dossier, document, actor = str(row[0]), str(row[1]), str(row[2])
        async with db.execute("SELECT 1 FROM dossiers WHERE code = ?", (dossier,)) as cur:
            exists = await cur.fetchone() is not None
        if not exists or await _already_attached(db, dossier, scan.pdf.sha256):
            await add_unassigned(db, scan)
            return
        try:
            await self.journal.append(
                db, Kind.ATTACHMENT, _attachment_body(scan, dossier, document, actor), actor=actor
            )
        except InvalidInput as exc:  # refused before anything was written: keep the scan for a person
            log.warning("scan %d not attached to %s (%s); put in the inbox", scan.id, dossier, exc)
            await add_unassigned(db, scan)
            return
        await db.execute("UPDATE desks SET touched_at = ? WHERE desk = ?", (now, scan.desk))


async def attach_from_inbox(
    store: Store, journal: Journal, *, scan_id: int, dossier: str, document: str, actor: str
) -> RegisteredScan:
    """Take a scan out of the inbox and attach it to ``dossier`` as ``document`` (one transaction)."""
    async with store.write() as db:
        state = await _dossier_state(db, dossier)
        document = _check_document(state, document)

        async def on_attach(db: aiosqlite.Connection, scan: RegisteredScan) -> None:
            if any(a.get("sha256") == scan.pdf.sha256 for a in state.get("attachments") or ()):
                raise Conflict(f"Bản quét này đã được đính kèm vào hồ sơ {dossier}.")
            await journal.append(
                db, Kind.ATTACHMENT, _attachment_body(scan, dossier, document, actor), actor=actor
            )

        return await attach_unassigned(db, scan_id, on_attach)


async def discard_from_inbox(
    store: Store, journal: Journal, *, scan_id: int, reason: str, actor: str
) -> RegisteredScan:
    """Discard a scan from the inbox; the signed log records who discarded what, and why."""
    reason = " ".join(reason.split())
    if not reason:
        raise InvalidInput({"reason": "Vui lòng ghi lý do huỷ bản quét."})
    if len(reason) > 500:
        raise InvalidInput({"reason": "Lý do tối đa 500 ký tự."})

    async def on_discard(db: aiosqlite.Connection, scan: RegisteredScan) -> None:
        body = {
            "actor": actor,
            "sha256": scan.pdf.sha256,
            "original_sha256": scan.original.sha256,
            "pages": scan.pages,
            "scanner": scan.scanner,
            "desk": scan.desk,
            "received_at": scan.received_at,
            "reason": reason,
        }
        await journal.append(db, SCAN_DISCARDED, body, actor=actor)

    async with store.write() as db:
        return await discard_unassigned(db, scan_id, on_discard, now_ms=journal.wall())


async def log_scan_access(
    store: Store, *, actor: str, sha256: str, dossier: str | None, action: str, now: int
) -> None:
    """Record that ``actor`` opened a scan (committed before the file is sent)."""
    async with store.write() as db:
        await db.execute(
            "INSERT INTO scan_access (at, actor, sha256, dossier, action) VALUES (?,?,?,?,?)",
            (now, actor, sha256, dossier, action),
        )
