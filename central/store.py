"""The hub's storage boundary: the ``HubStore`` protocol and its SQLite implementation.

The protocol code (receive, mailbox, sync API) talks to ``HubStore`` only; a PostgreSQL store can follow
by implementing it. The SQLite store follows DESIGN.md §8: WAL, ``synchronous=FULL``, one writer
connection (every write transaction is ``BEGIN IMMEDIATE`` under one lock, so a push batch is one
transaction with ``executemany``), a separate reader connection. Entries are stored as the exact
canonical bytes received, never re-encoded.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import aiosqlite

from central.errors import StorageFailed
from central.schema import MIGRATIONS
from protocol import Receipt

__all__ = ["EntryBatch", "EntryRow", "ForkEvidence", "HeadRow", "HubStore", "SqliteStore", "StoreClosed"]

Extra = Callable[[aiosqlite.Connection], Awaitable[None]]

log = logging.getLogger("motcua.central.store")


class StoreClosed(RuntimeError):
    """The store was used after close()."""


_SQLITE_IOERR = 10


def _io_error(exc: BaseException) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    return code is not None and code & 0xFF == _SQLITE_IOERR


@dataclass(frozen=True, slots=True)
class HeadRow:
    """What the hub holds of one log epoch."""

    log: str
    epoch: int
    seq: int
    hash: str
    time: tuple[int, int]


@dataclass(frozen=True, slots=True)
class EntryRow:
    """One entry as stored: its position, hash, kind, HLC time, dossier (if any) and exact bytes."""

    seq: int
    hash: str
    kind: str
    time: tuple[int, int]
    dossier: str | None
    raw: bytes


@dataclass(slots=True)
class EntryBatch:
    """Entries continuing (log, epoch) from ``base_seq``: one transaction with their side rows."""

    log: str
    epoch: int
    base_seq: int
    rows: list[EntryRow]
    received_ms: int
    receipt: Receipt | None = None
    quarantine: list[tuple[int, str, str, str]] = field(default_factory=list)  # seq, hash, code, reason
    extra: list[Extra] = field(default_factory=list)  # more statements in the same transaction


@dataclass(frozen=True, slots=True)
class ForkEvidence:
    """A validly signed entry offered at a position where the hub holds another one."""

    log: str
    epoch: int
    seq: int
    stored_hash: str
    offered_hash: str
    offered_raw: bytes
    node: str
    detected_ms: int


class HubStore(Protocol):
    """What the sync protocol needs from storage."""

    async def head(self, log: str, epoch: int) -> HeadRow | None: ...
    async def heads(self, logs: Sequence[str]) -> list[HeadRow]: ...
    async def hashes(self, log: str, epoch: int, first: int, last: int) -> dict[int, str]: ...
    async def entries(self, log: str, epoch: int, after: int, limit: int) -> list[bytes]: ...
    async def raw_entry(self, log: str, epoch: int, seq: int) -> bytes | None: ...
    async def receipt(self, log: str, epoch: int, seq: int) -> Receipt | None: ...
    async def commit(self, *batches: EntryBatch) -> None: ...
    async def record_fork(self, fork: ForkEvidence) -> None: ...


async def _rollback_begun(db: aiosqlite.Connection) -> None:
    """ROLLBACK after a BEGIN whose await failed: queued on the writer's thread after the BEGIN (so it runs
    even if this task is cancelled again); no transaction (BEGIN never ran or failed) is fine."""
    try:
        await asyncio.shield(db.execute("ROLLBACK"))
    except sqlite3.Error:
        pass


class SqliteStore:
    """SQLite implementation of ``HubStore`` plus ``write()``/``read()`` for the hub's other tables."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._writer: aiosqlite.Connection | None = None
        self._reader: aiosqlite.Connection | None = None
        self._lock = asyncio.Lock()
        self._closed = False
        #: fail-stop (as the node's store): set by an I/O error on the write path, refuses later writes
        self.failed: StorageFailed | None = None
        #: called once when the store fails (``serve`` exits for a restart)
        self.on_failure: list[Callable[[StorageFailed], None]] = []

    async def open(self) -> SqliteStore:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._writer = await aiosqlite.connect(self.path, isolation_level=None)
        for pragma in ("journal_mode=WAL", "synchronous=FULL", "foreign_keys=ON", "busy_timeout=5000"):
            await self._writer.execute(f"PRAGMA {pragma}")
        await self._migrate(self._writer)
        self._reader = await aiosqlite.connect(f"file:{self.path}?mode=ro", uri=True, isolation_level=None)
        await self._reader.execute("PRAGMA busy_timeout=5000")
        return self

    async def close(self) -> None:
        """Idempotent."""
        self._closed = True
        for conn in (self._reader, self._writer):
            if conn is not None:
                await conn.close()
        self._reader = self._writer = None

    async def _migrate(self, db: aiosqlite.Connection) -> None:
        await db.execute("CREATE TABLE IF NOT EXISTS schema_migrations (name TEXT PRIMARY KEY) STRICT")
        done = {row[0] for row in await db.execute_fetchall("SELECT name FROM schema_migrations")}
        for name, sql in MIGRATIONS:
            if name in done:
                continue
            await db.execute("BEGIN IMMEDIATE")
            try:
                for statement in sql.split(";\n"):
                    if statement.strip():
                        await db.execute(statement)
                await db.execute("INSERT INTO schema_migrations (name) VALUES (?)", (name,))
                await db.execute("COMMIT")
            except BaseException:
                await db.execute("ROLLBACK")
                raise

    def _conn(self, reader: bool) -> aiosqlite.Connection:
        conn = self._reader if reader else self._writer
        if self._closed or conn is None:
            raise StoreClosed("the hub store is closed")
        return conn

    @asynccontextmanager
    async def write(self) -> AsyncIterator[aiosqlite.Connection]:
        """One write transaction (BEGIN IMMEDIATE ... COMMIT); rolls back on any error.

        An I/O error (SQLITE_IOERR) anywhere in it fails the store: this and every later write raise
        ``StorageFailed`` and ``on_failure`` runs (fsyncgate: no fsync is retried, see ``StorageFailed``).
        """
        if self.failed is not None:
            raise StorageFailed(f"store failed earlier: {self.failed.detail}")
        async with self._lock:
            db = self._conn(reader=False)
            if self.failed is not None:
                raise StorageFailed(f"store failed earlier: {self.failed.detail}")
            try:
                try:
                    await db.execute("BEGIN IMMEDIATE")
                except BaseException:
                    # A handler is cancelled when its client disconnects (aiohttp): the cancellation can
                    # land on this await after aiosqlite's thread ran BEGIN. Without a rollback here that
                    # transaction stayed open and every later write failed ("cannot start a transaction
                    # within a transaction") until a restart.
                    await _rollback_begun(db)
                    raise
                try:
                    yield db
                except BaseException:
                    if db.in_transaction:
                        await db.execute("ROLLBACK")
                    raise
                try:
                    await db.execute("COMMIT")
                except BaseException:
                    if db.in_transaction:  # SQLite may already have rolled back by itself
                        await db.execute("ROLLBACK")
                    raise
            except Exception as exc:
                if not _io_error(exc):
                    raise
                raise self._fail(exc) from exc

    def _fail(self, exc: BaseException) -> StorageFailed:
        error = StorageFailed(str(exc))
        if self.failed is None:
            self.failed = error
            log.critical("hub storage failed on %s: %s; refusing writes until restart", self.path, exc)
            for hook in tuple(self.on_failure):
                try:
                    hook(error)
                except Exception:
                    log.exception("on_failure hook failed")
        return error

    @asynccontextmanager
    async def read(self) -> AsyncIterator[aiosqlite.Connection]:
        yield self._conn(reader=True)

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        return list(await self._conn(reader=True).execute_fetchall(sql, params))

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> Any:
        rows = await self.fetchall(sql, params)
        return rows[0] if rows else None

    # -- HubStore ---------------------------------------------------------------------------------

    async def head(self, log: str, epoch: int) -> HeadRow | None:
        row = await self.fetchone(
            "SELECT seq, hash, time_ms, time_n FROM heads WHERE log = ? AND epoch = ?", (log, epoch)
        )
        return None if row is None else HeadRow(log, epoch, row[0], row[1], (row[2], row[3]))

    async def heads(self, logs: Sequence[str]) -> list[HeadRow]:
        marks = ",".join("?" * len(logs))
        rows = await self.fetchall(
            f"SELECT log, epoch, seq, hash, time_ms, time_n FROM heads WHERE log IN ({marks}) "
            "ORDER BY log, epoch",
            list(logs),
        )
        return [HeadRow(r[0], r[1], r[2], r[3], (r[4], r[5])) for r in rows]

    async def hashes(self, log: str, epoch: int, first: int, last: int) -> dict[int, str]:
        rows = await self.fetchall(
            "SELECT seq, hash FROM entries WHERE log = ? AND epoch = ? AND seq BETWEEN ? AND ?",
            (log, epoch, first, last),
        )
        return {seq: h for seq, h in rows}

    async def entries(self, log: str, epoch: int, after: int, limit: int) -> list[bytes]:
        rows = await self.fetchall(
            "SELECT raw FROM entries WHERE log = ? AND epoch = ? AND seq > ? ORDER BY seq LIMIT ?",
            (log, epoch, after, limit),
        )
        return [bytes(r[0]) for r in rows]

    async def raw_entry(self, log: str, epoch: int, seq: int) -> bytes | None:
        row = await self.fetchone(
            "SELECT raw FROM entries WHERE log = ? AND epoch = ? AND seq = ?", (log, epoch, seq)
        )
        return None if row is None else bytes(row[0])

    async def receipt(self, log: str, epoch: int, seq: int) -> Receipt | None:
        row = await self.fetchone(
            "SELECT head, hub_time, sig FROM receipts WHERE log = ? AND epoch = ? AND seq = ?",
            (log, epoch, seq),
        )
        return None if row is None else Receipt(log, epoch, seq, row[0], row[1], row[2])

    async def commit(self, *batches: EntryBatch) -> None:
        """Insert entries, move heads (only if still at ``base_seq``), add side rows: one transaction."""
        async with self.write() as db:
            for batch in batches:
                await _write_batch(db, batch)

    async def record_fork(self, fork: ForkEvidence) -> None:
        """Keep the offered entry as evidence, quarantine the node and raise an alarm, in one transaction."""
        async with self.write() as db:
            await db.execute(
                "INSERT OR IGNORE INTO forks (log, epoch, seq, stored_hash, offered_hash, offered_raw, "
                "detected_ms) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    fork.log,
                    fork.epoch,
                    fork.seq,
                    fork.stored_hash,
                    fork.offered_hash,
                    fork.offered_raw,
                    fork.detected_ms,
                ),
            )
            await db.execute(
                "UPDATE nodes SET status = 'quarantined', status_reason = ? "
                "WHERE node = ? AND status = 'active'",
                (f"fork at {fork.log}/{fork.epoch}:{fork.seq}", fork.node),
            )
            await db.execute(
                "INSERT INTO alarms (node, kind, message, created_ms) VALUES (?, 'fork', ?, ?)",
                (
                    fork.node,
                    f"two signed entries at {fork.log}/{fork.epoch}:{fork.seq}: "
                    f"stored {fork.stored_hash[:12]}, offered {fork.offered_hash[:12]}",
                    fork.detected_ms,
                ),
            )


async def _write_batch(db: aiosqlite.Connection, batch: EntryBatch) -> None:
    last = batch.rows[-1] if batch.rows else None
    if last is not None:
        if batch.base_seq == 0:
            cur = await db.execute(
                "INSERT INTO heads (log, epoch, seq, hash, time_ms, time_n) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                (batch.log, batch.epoch, last.seq, last.hash, last.time[0], last.time[1]),
            )
        else:
            cur = await db.execute(
                "UPDATE heads SET seq = ?, hash = ?, time_ms = ?, time_n = ? "
                "WHERE log = ? AND epoch = ? AND seq = ?",
                (last.seq, last.hash, last.time[0], last.time[1], batch.log, batch.epoch, batch.base_seq),
            )
        if cur.rowcount != 1:
            raise RuntimeError(f"head of {batch.log}/{batch.epoch} moved during the push")
        await db.executemany(
            "INSERT INTO entries (log, epoch, seq, hash, kind, time_ms, time_n, dossier, raw, received_ms) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    batch.log,
                    batch.epoch,
                    r.seq,
                    r.hash,
                    r.kind,
                    r.time[0],
                    r.time[1],
                    r.dossier,
                    r.raw,
                    batch.received_ms,
                )
                for r in batch.rows
            ],
        )
    if batch.quarantine:
        await db.executemany(
            "INSERT INTO quarantine (log, epoch, seq, hash, code, reason, created_ms) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            [(batch.log, batch.epoch, *q, batch.received_ms) for q in batch.quarantine],
        )
    if batch.receipt is not None:
        r = batch.receipt
        await db.execute(
            "INSERT OR IGNORE INTO receipts (log, epoch, seq, head, hub_time, sig) VALUES (?, ?, ?, ?, ?, ?)",
            (r.log, r.epoch, r.seq, r.head, r.hub_time, r.sig),
        )
    for extra in batch.extra:
        await extra(db)
