"""Retention of local scans: delete the files the hub holds, of dossiers closed long ago (DESIGN.md §9).

A scan file (blob) is deleted only when **all** of these hold, for every attachment entry naming it:

- the dossier is closed (``returned``, ``refused``, ``stopped``, ``withdrawn``) and ended more than
  ``scan_retention_days`` ago;
- a verified hub receipt covers the attachment entry (the hub durably holds the entry);
- the hub confirmed the whole blob (``sync_blobs``, written by the sync client after the hub said
  ``complete``).

The log is never touched: entries, manifests and hashes stay, so the dossier's history verifies and the
scan can be fetched back from the hub. Each deletion is recorded first (``purged_blobs``) and the file
unlinked after the commit, so a crash in between leaves a file that the next run removes; a file is never
missing without its record. The periodic task (``retention_task``) runs the same ``purge_scans``.

Who opened or downloaded which scan is recorded in ``scan_access`` (``node.scan_attach.log_scan_access``,
written before the file is sent); purging keeps those records.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiosqlite

from node.blobs import fsync_dir
from node.config import NodeConfig
from node.store import Store

__all__ = [
    "CLOSED_STATES",
    "RETENTION_SQL",
    "PurgeReport",
    "purge_scans",
    "retention_task",
]

log = logging.getLogger("motcua.node.retention")

CLOSED_STATES = ("returned", "refused", "stopped", "withdrawn")
DAY_MS = 86_400_000

RETENTION_SQL = """
CREATE TABLE purged_blobs (
    sha256    TEXT PRIMARY KEY,
    size      INTEGER NOT NULL,
    purged_at INTEGER NOT NULL,          -- unix ms; the file is gone from this node, the hub holds it
    dossiers  TEXT NOT NULL              -- JSON list of the dossiers whose attachments named it
) STRICT;
"""


@dataclass(slots=True)
class PurgeReport:
    deleted: list[str] = field(default_factory=list)
    bytes: int = 0
    kept_open: int = 0  # blobs of a dossier still open or closed within the window
    kept_not_held: int = 0  # blobs the hub has not confirmed (entry receipt or whole blob)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


async def _tables(db: aiosqlite.Connection) -> set[str]:
    async with db.execute("SELECT name FROM sqlite_master WHERE type = 'table'") as cursor:
        return {str(r[0]) async for r in cursor}


async def _receipt_seq(db: aiosqlite.Connection, tables: set[str]) -> dict[tuple[str, int], int]:
    held: dict[tuple[str, int], int] = {}
    for table in ("hub_receipts", "sync_receipts"):
        if table in tables:
            async with db.execute(f"SELECT log, epoch, max(seq) FROM {table} GROUP BY log, epoch") as cursor:
                async for log_, epoch, seq in cursor:
                    key = (str(log_), int(epoch))
                    held[key] = max(held.get(key, 0), int(seq))
    return held


def _blob_path(blob_dir: Path, sha: str) -> Path:
    return blob_dir / "sha256" / sha[:2] / sha


async def purge_scans(
    config: NodeConfig,
    *,
    store: Store | None = None,
    older_than_days: int | None = None,
    dry_run: bool = False,
    now_ms: Callable[[], int] = _now_ms,
) -> PurgeReport:
    """Delete the local scan files that may go (see the module docstring); return what happened."""
    days = config.scan_retention_days if older_than_days is None else older_than_days
    if days < 0:
        raise ValueError("older_than_days must be >= 0")
    own = store is None
    store = store or await Store.open(config.db_path)
    report = PurgeReport()
    try:
        cutoff = now_ms() - days * DAY_MS
        async with store.read() as db:
            tables = await _tables(db)
            receipts = await _receipt_seq(db, tables)
            confirmed: set[str] = set()
            if "sync_blobs" in tables:
                async with db.execute("SELECT sha256 FROM sync_blobs") as cursor:
                    confirmed = {str(r[0]) async for r in cursor}
            async with db.execute("SELECT sha256 FROM purged_blobs") as cursor:
                purged = {str(r[0]) async for r in cursor}
            placeholders = ",".join("?" * len(CLOSED_STATES))
            async with db.execute(
                f"SELECT code FROM dossiers WHERE state IN ({placeholders}) AND ended_at IS NOT NULL"
                " AND ended_at < ?",
                (*CLOSED_STATES, cutoff),
            ) as cursor:
                closed = {str(r[0]) async for r in cursor}
            uses: dict[str, list[tuple[str, str, int, int]]] = {}
            async with db.execute(
                "SELECT dossier, log, epoch, seq, raw FROM entries WHERE kind = 'dossier.attachment'"
            ) as cursor:
                async for dossier, log_, epoch, seq, raw in cursor:
                    manifest = json.loads(bytes(raw))["body"].get("manifest") or {}
                    sha = manifest.get("sha256")
                    if isinstance(sha, str) and len(sha) == 64:
                        uses.setdefault(sha, []).append((str(dossier), str(log_), int(epoch), int(seq)))
        doomed: list[tuple[str, list[str]]] = []
        for sha, refs in sorted(uses.items()):
            path = _blob_path(config.blob_dir, sha)
            if sha in purged and not path.exists():
                continue
            if not all(dossier in closed for dossier, *_ in refs):
                report.kept_open += 1
                continue
            held = all(receipts.get((log_, epoch), 0) >= seq for _, log_, epoch, seq in refs)
            if not held or sha not in confirmed:
                report.kept_not_held += 1
                continue
            if path.exists():
                doomed.append((sha, sorted({dossier for dossier, *_ in refs})))
        if dry_run:
            for sha, _ in doomed:
                report.deleted.append(sha)
                report.bytes += _blob_path(config.blob_dir, sha).stat().st_size
            return report
        for sha, dossiers in doomed:
            path = _blob_path(config.blob_dir, sha)
            size = path.stat().st_size
            async with store.write() as db:  # the record first: a file is never gone without it
                await db.execute(
                    "INSERT INTO purged_blobs (sha256, size, purged_at, dossiers) VALUES (?,?,?,?)"
                    " ON CONFLICT (sha256) DO UPDATE SET purged_at = excluded.purged_at",
                    (sha, size, now_ms(), json.dumps(dossiers)),
                )
            path.unlink(missing_ok=True)
            fsync_dir(path.parent)
            report.deleted.append(sha)
            report.bytes += size
        if doomed:
            log.info("purged %d scans (%d bytes) the hub holds", len(doomed), report.bytes)
        return report
    finally:
        if own:
            await store.close()


async def retention_task(
    config: NodeConfig, store: Store, *, interval_s: float = 6 * 3600, first_delay_s: float = 300
) -> None:
    """Run ``purge_scans`` now and then (after a delay, so a restart does not start with disk work)."""
    await asyncio.sleep(first_delay_s)
    while True:
        try:
            await purge_scans(config, store=store)
        except asyncio.CancelledError:
            raise
        except Exception:  # a failed purge must never stop the node; the next run retries
            log.exception("scan purge failed")
        await asyncio.sleep(interval_s)


@contextlib.asynccontextmanager
async def running(config: NodeConfig, store: Store, **kw: float) -> AsyncIterator[asyncio.Task[None]]:
    """The retention task for the lifetime of the block (cancelled and awaited on exit)."""
    task = asyncio.create_task(retention_task(config, store, **kw), name="scan-retention")
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
