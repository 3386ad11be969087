"""Scans taken from the hot folders, and the inbox of scans not yet assigned to a dossier.

``scans`` is the local intake log (one row per accepted scanner file, pointing at its blobs); it also
dedups by content. A scan then goes one of two ways, decided by the node core's ``on_scan`` callback
inside the intake transaction: attached to the desk's open dossier (a signed ``dossier.attachment``
entry), or put in ``unassigned_scans`` (``add_unassigned``), from where staff attach it to a dossier
or discard it. Both leave through a callback so the journal records them in the same transaction.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiosqlite

from node.blobs import BlobInfo, get_blob
from node.errors import ScanNotFound

__all__ = [
    "SCANS_SQL",
    "OnScan",
    "RegisteredScan",
    "add_unassigned",
    "attach_unassigned",
    "discard_unassigned",
    "find_by_content",
    "get_scan",
    "insert_scan",
    "list_unassigned",
]

SCANS_SQL = """
CREATE TABLE IF NOT EXISTS scans (
    id              INTEGER PRIMARY KEY,
    scanner         TEXT NOT NULL,
    desk            TEXT NOT NULL,
    display_name    TEXT NOT NULL,      -- sanitised NFC name; never used as a path
    kind            TEXT NOT NULL CHECK (kind IN ('pdf', 'jpeg', 'png', 'tiff')),
    pages           INTEGER NOT NULL CHECK (pages > 0),
    original_sha256 TEXT NOT NULL REFERENCES blobs (sha256),   -- the file as the scanner wrote it
    pdf_sha256      TEXT NOT NULL REFERENCES blobs (sha256),   -- = original for PDFs, img2pdf otherwise
    source_size     INTEGER NOT NULL,
    source_mtime_ns INTEGER NOT NULL,
    received_at     INTEGER NOT NULL,   -- unix ms
    discarded_at    INTEGER             -- set when staff discard it from the inbox
) STRICT;
CREATE INDEX IF NOT EXISTS scans_original ON scans (original_sha256);

CREATE TABLE IF NOT EXISTS unassigned_scans (
    scan_id  INTEGER PRIMARY KEY REFERENCES scans (id),
    desk     TEXT NOT NULL,
    added_at INTEGER NOT NULL
) STRICT;
"""


@dataclass(frozen=True, slots=True)
class RegisteredScan:
    """A scan whose blobs are registered: what the journal's attachment entry is built from."""

    id: int
    scanner: str
    desk: str
    display_name: str
    kind: str
    pages: int
    original: BlobInfo
    pdf: BlobInfo
    source_size: int
    source_mtime_ns: int
    received_at: int
    discarded_at: int | None = None

    def manifests(self) -> dict[str, Any]:
        """Blob manifests for a ``dossier.attachment`` body: the PDF, and the original when it differs."""
        out: dict[str, Any] = {"pdf": self.pdf.manifest()}
        if self.original.sha256 != self.pdf.sha256:
            out["original"] = self.original.manifest()
        return out


#: called inside the intake (or attach) write transaction; raising rolls the whole intake back
OnScan = Callable[[aiosqlite.Connection, RegisteredScan], Awaitable[None]]

_COLS = (
    "id, scanner, desk, display_name, kind, pages, original_sha256, pdf_sha256, source_size,"
    " source_mtime_ns, received_at, discarded_at"
)


async def _scan(db: aiosqlite.Connection, row: Any) -> RegisteredScan:
    original, pdf = await get_blob(db, row[6]), await get_blob(db, row[7])
    if original is None or pdf is None:  # FK-like invariant: scans rows are written after their blobs
        raise ScanNotFound(detail=f"scan {row[0]} has unregistered blobs")
    return RegisteredScan(row[0], row[1], row[2], row[3], row[4], row[5], original, pdf, *row[8:])


async def get_scan(db: aiosqlite.Connection, scan_id: int) -> RegisteredScan:
    async with db.execute(f"SELECT {_COLS} FROM scans WHERE id = ?", (scan_id,)) as cur:
        row = await cur.fetchone()
    if row is None:
        raise ScanNotFound(detail=f"scan {scan_id}")
    return await _scan(db, row)


async def find_by_content(db: aiosqlite.Connection, original_sha256: str) -> RegisteredScan | None:
    """The live (not discarded) scan with exactly these bytes, if any."""
    async with db.execute(
        f"SELECT {_COLS} FROM scans WHERE original_sha256 = ? AND discarded_at IS NULL ORDER BY id LIMIT 1",
        (original_sha256,),
    ) as cur:
        row = await cur.fetchone()
    return await _scan(db, row) if row else None


async def insert_scan(
    db: aiosqlite.Connection,
    *,
    scanner: str,
    desk: str,
    display_name: str,
    kind: str,
    pages: int,
    original: BlobInfo,
    pdf: BlobInfo,
    source_size: int,
    source_mtime_ns: int,
    received_at: int,
) -> RegisteredScan:
    """Record an accepted scan (called by the intake, inside its transaction)."""
    cur = await db.execute(
        "INSERT INTO scans (scanner, desk, display_name, kind, pages, original_sha256, pdf_sha256,"
        " source_size, source_mtime_ns, received_at) VALUES (?,?,?,?,?,?,?,?,?,?)",
        (scanner, desk, display_name, kind, pages, original.sha256, pdf.sha256, source_size, source_mtime_ns,
         received_at),
    )  # fmt: skip
    assert cur.lastrowid is not None
    return RegisteredScan(cur.lastrowid, scanner, desk, display_name, kind, pages, original, pdf, source_size,
                          source_mtime_ns, received_at)  # fmt: skip


async def add_unassigned(db: aiosqlite.Connection, scan: RegisteredScan) -> None:
    """Put a scan in the inbox (the ``on_scan`` to use when the desk has no open dossier)."""
    await db.execute(
        "INSERT OR IGNORE INTO unassigned_scans (scan_id, desk, added_at) VALUES (?, ?, ?)",
        (scan.id, scan.desk, scan.received_at),
    )


async def list_unassigned(db: aiosqlite.Connection, desk: str | None = None) -> list[RegisteredScan]:
    """The inbox, oldest first; all desks or one."""
    sql = f"SELECT {', '.join('s.' + c.strip() for c in _COLS.split(','))} FROM unassigned_scans u"
    sql += " JOIN scans s ON s.id = u.scan_id"
    args: tuple[Any, ...] = ()
    if desk is not None:
        sql += " WHERE u.desk = ?"
        args = (desk,)
    async with db.execute(sql + " ORDER BY u.added_at, u.scan_id", args) as cur:
        rows = list(await cur.fetchall())
    return [await _scan(db, row) for row in rows]


async def _take(db: aiosqlite.Connection, scan_id: int) -> RegisteredScan:
    cur = await db.execute("DELETE FROM unassigned_scans WHERE scan_id = ?", (scan_id,))
    if cur.rowcount != 1:
        raise ScanNotFound(detail=f"scan {scan_id} is not in the inbox")
    return await get_scan(db, scan_id)


async def attach_unassigned(db: aiosqlite.Connection, scan_id: int, on_attach: OnScan) -> RegisteredScan:
    """Take a scan out of the inbox and hand it to ``on_attach`` (journal: dossier.attachment)."""
    scan = await _take(db, scan_id)
    await on_attach(db, scan)
    return scan


async def discard_unassigned(
    db: aiosqlite.Connection, scan_id: int, on_discard: OnScan, *, now_ms: int
) -> RegisteredScan:
    """Discard a scan from the inbox; ``on_discard`` logs it (journal). The blobs stay until retention."""
    scan = await _take(db, scan_id)
    await db.execute("UPDATE scans SET discarded_at = ? WHERE id = ?", (now_ms, scan_id))
    scan = await get_scan(db, scan_id)
    await on_discard(db, scan)
    return scan
