"""Schema migrations: named steps applied once, in order, each in its own transaction.

Each domain module owns its SQL (``journal.JOURNAL_SQL``, ``projection.PROJECTION_SQL``,
``auth.AUTH_SQL``, ``intake.INTAKE_SQL``, ``blobs.BLOBS_SQL``, ``scan_inbox.SCANS_SQL``,
``printing.PRINT_SQL``, ``scan_attach.DESKS_SQL``); this module lists the steps. A step, once released, never
changes: add a new step instead. Applied steps are recorded in ``schema_migrations``.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence

import aiosqlite

from node.auth import AUTH_SQL
from node.blobs import BLOBS_SQL
from node.dossiers import ACCESS_SQL
from node.hublink import HUB_LINK_SQL
from node.intake import INTAKE_SQL
from node.journal import JOURNAL_SQL
from node.printing import PRINT_SQL
from node.projection import PROJECTION_SQL
from node.retention import RETENTION_SQL
from node.scan_attach import DESKS_SQL
from node.scan_inbox import SCANS_SQL
from node.sync_client import SYNC_SQL as SYNC_CLIENT_SQL
from node.syncstate import SYNC_SQL

__all__ = ["MIGRATIONS", "Migration", "applied", "apply_migrations", "split_sql"]

Migration = tuple[str, str]

MIGRATIONS: tuple[Migration, ...] = (
    ("0001_core", JOURNAL_SQL + PROJECTION_SQL + AUTH_SQL + INTAKE_SQL + SYNC_SQL + ACCESS_SQL),
    # devices: blob store, then the scans that point at blobs, then print jobs, then desks
    ("0002_blobs", BLOBS_SQL),
    ("0003_scans", SCANS_SQL),
    ("0004_print", PRINT_SQL),
    ("0005_desks", DESKS_SQL),
    # sync with the hub: receipts, sync state, blobs the hub holds, the enrollment (hub link)
    ("0006_sync", SYNC_CLIENT_SQL + HUB_LINK_SQL),
    ("0007_retention", RETENTION_SQL),
)

_LEDGER = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    name       TEXT PRIMARY KEY,
    applied_at INTEGER NOT NULL
) STRICT
"""


def split_sql(script: str) -> list[str]:
    """Split a script into complete statements (``executescript`` would commit behind our back)."""
    statements: list[str] = []
    current: list[str] = []
    for line in script.splitlines(keepends=True):
        if not current and (not line.strip() or line.lstrip().startswith("--")):
            continue
        current.append(line)
        text = "".join(current)
        if sqlite3.complete_statement(text):
            statements.append(text.strip())
            current = []
    if "".join(current).strip():
        raise ValueError(f"incomplete SQL statement: {''.join(current)[:80]!r}")
    return statements


async def applied(db: aiosqlite.Connection) -> set[str]:
    """Names of the steps already applied (empty on a new database)."""
    async with db.execute(
        "SELECT name FROM sqlite_master WHERE type='table' AND name='schema_migrations'"
    ) as cursor:
        if await cursor.fetchone() is None:
            return set()
    async with db.execute("SELECT name FROM schema_migrations") as cursor:
        return {row[0] async for row in cursor}


async def apply_migrations(db: aiosqlite.Connection, steps: Sequence[Migration] = MIGRATIONS) -> list[str]:
    """Apply every step not yet recorded; return the names applied now. Each step is atomic."""
    names = [name for name, _ in steps]
    if len(set(names)) != len(names):
        raise ValueError("migration names must be unique")
    done: list[str] = []
    await db.execute(_LEDGER)
    for name, script in steps:
        await db.execute("BEGIN IMMEDIATE")
        try:
            async with db.execute("SELECT 1 FROM schema_migrations WHERE name = ?", (name,)) as cursor:
                if await cursor.fetchone() is not None:
                    await db.rollback()
                    continue
            for statement in split_sql(script):
                await db.execute(statement)
            await db.execute(
                "INSERT INTO schema_migrations (name, applied_at) VALUES (?, ?)",
                (name, int(time.time() * 1000)),
            )
            await db.commit()
        except BaseException:
            if db.in_transaction:
                await db.rollback()
            raise
        done.append(name)
    return done
