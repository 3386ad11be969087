"""The node's SQLite store: one writer connection, one read-only reader connection.

- ``async with store.write() as db:`` takes the writer lock, runs ``BEGIN IMMEDIATE``, commits on a
  clean exit and rolls back on any error. Commit happens before the block's caller answers anyone, so
  "durable before acknowledged" holds with ``synchronous=FULL``. After an SQLite error the connection's
  ``in_transaction`` is checked: SQLite may already have rolled back on its own (sqlite.org
  c3ref/get_autocommit), and a second ROLLBACK would raise and hide the first error.
- ``async with store.read() as db:`` gives the reader (``query_only``); WAL lets it read while the
  writer writes. Reads never see a transaction that has not committed.
- ``close()`` is idempotent; any use after it raises ``StoreClosed``.
- ``run_sync(db, fn, *args)`` runs ``fn(conn, *args)`` with the plain ``sqlite3`` connection on the
  connection's own thread: several statements for one hand-off between the event loop and that thread
  (each ``await db.execute(...)`` is one; under load each costs a turn of the busy event loop).
- A full disk (SQLITE_FULL) surfaces as ``DiskFull`` (507): SQLite rolled back, the same process goes on.
- An I/O error on the write path (SQLITE_IOERR, e.g. EIO from fdatasync at commit) is fail-stop, as
  PostgreSQL does after fsyncgate: the store becomes *failed*, that request and every later write get
  ``StorageFailed`` (503, Vietnamese: not confirmed, the node restarts, check the dossier list), the
  ``on_failure`` hooks run (``serve`` exits with ``EXIT_STORAGE_FAILED`` without closing the database,
  so no fsync is ever retried and no checkpoint runs), and the next start's WAL recovery settles what
  was saved. Reads keep working until the process exits.
- Both connections are SQLCipher connections opened by ``node.dbcipher.aconnect`` with the node's
  database key (``key``, default: the unlocked keyring of the database's folder, node.atrest).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

from node.dbcipher import DB_ERRORS, Row, aconnect
from node.errors import DiskFull, StorageFailed, StoreClosed

__all__ = ["Store", "run_sync", "storage_error"]

log = logging.getLogger("motcua.node.store")

_SQLITE_IOERR, _SQLITE_FULL = 10, 13
T = TypeVar("T")


async def run_sync(db: aiosqlite.Connection, fn: Callable[..., T], *args: Any) -> T:
    """``fn(conn, *args)`` on ``db``'s own thread, where ``conn`` is its ``sqlite3.Connection``: one
    hand-off for all the statements ``fn`` runs, in the caller's transaction. ``fn`` must not commit,
    roll back or keep ``conn``; it runs while the event loop goes on, so it must not touch state the
    loop changes. (aiosqlite has no public call for this; ``_execute`` is how its own methods queue work
    on the thread, and aiosqlite is pinned in the lock files.)
    """
    return await db._execute(fn, db._conn, *args)  # type: ignore[no-any-return]


async def _rollback_begun(db: aiosqlite.Connection) -> None:
    """ROLLBACK after a BEGIN whose await failed: queued on the connection's thread after the BEGIN (so it
    runs even if this task is cancelled again); no transaction (BEGIN never ran or failed) is fine."""
    try:
        await asyncio.shield(db.execute("ROLLBACK"))
    except DB_ERRORS:
        pass


def storage_error(exc: BaseException) -> BaseException:
    """A disk problem under SQLite as the node error staff can act on; anything else unchanged.

    After an I/O error at commit the outcome is not certain (WAL recovery after a crash may still find
    the transaction), so the message says "not confirmed", never "not saved": ``StorageFailed``.
    """
    code = getattr(exc, "sqlite_errorcode", None)
    if not isinstance(exc, DB_ERRORS) or code is None:
        return exc
    if code & 0xFF == _SQLITE_FULL:
        return DiskFull(
            "Ổ đĩa máy trạm đã đầy: dữ liệu chưa được lưu. Hãy giải phóng dung lượng rồi thử lại.",
            detail=str(exc),
        )
    if code & 0xFF == _SQLITE_IOERR:
        return StorageFailed(detail=str(exc))
    return exc


_PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=FULL",
    "PRAGMA foreign_keys=ON",
    "PRAGMA busy_timeout=10000",
)


class Store:
    """One SQLite file: a writer (serialised by an asyncio lock) and a read-only reader."""

    def __init__(self, path: Path, writer: aiosqlite.Connection, reader: aiosqlite.Connection) -> None:
        self.path = path
        self._writer = writer
        self._reader = reader
        self._lock = asyncio.Lock()
        self._read_lock = asyncio.Lock()
        self._closed = False
        #: called (synchronously, cheaply) after every committed write transaction, e.g. to wake sync
        self.on_commit: list[Callable[[], None]] = []
        #: the fail-stop error once an I/O error hit the write path (None while healthy)
        self.failed: StorageFailed | None = None
        #: called once (synchronously) when the store fails, e.g. ``serve`` exiting for a restart
        self.on_failure: list[Callable[[StorageFailed], None]] = []

    @classmethod
    async def open(cls, path: str | Path, *, migrate: bool = True, key: bytes | None = None) -> Store:
        """Open (creating if needed) and migrate the database at ``path``, keyed with ``key``.

        ``key`` defaults to the database key of the keyring unlocked for the folder of ``path``.
        """
        path = Path(path)
        if key is None:
            from node.atrest import keyring_for

            key = keyring_for(path.parent).db_key
        writer = await aconnect(path, key)
        try:
            for pragma in _PRAGMAS:
                await writer.execute(pragma)
            if migrate:
                from node.migrations import MIGRATIONS, apply_migrations

                await apply_migrations(writer, MIGRATIONS)
            reader = await aconnect(path, key)
        except BaseException:
            await writer.close()
            raise
        try:
            await reader.execute("PRAGMA busy_timeout=10000")
            await reader.execute("PRAGMA query_only=ON")
        except BaseException:
            await reader.close()
            await writer.close()
            raise
        return cls(path, writer, reader)

    @property
    def closed(self) -> bool:
        return self._closed

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosed(detail=str(self.path))

    def _check_writable(self) -> None:
        self._check_open()
        if self.failed is not None:
            raise StorageFailed(detail=f"store failed earlier: {self.failed.detail}")

    def _mapped(self, exc: BaseException) -> BaseException:
        """``storage_error(exc)``; a ``StorageFailed`` puts the store into the failed state (once)."""
        mapped = storage_error(exc)
        if isinstance(mapped, StorageFailed) and self.failed is None:
            self.failed = mapped
            log.critical("storage failed on %s: %s; refusing writes until restart", self.path, mapped.detail)
            for hook in tuple(self.on_failure):
                try:
                    hook(mapped)
                except Exception:
                    log.exception("on_failure hook failed")
        return mapped

    @asynccontextmanager
    async def write(self) -> AsyncIterator[aiosqlite.Connection]:
        """A write transaction (BEGIN IMMEDIATE); commits on exit, rolls back on error."""
        self._check_writable()
        async with self._lock:
            self._check_writable()
            db = self._writer
            try:
                await db.execute("BEGIN IMMEDIATE")
            except DB_ERRORS as exc:
                raise self._mapped(exc) from exc
            except BaseException:
                # aiohttp cancels a handler whose client disconnects: the cancellation can land on this
                # await after aiosqlite's thread ran BEGIN; without a rollback the transaction stays open
                # and every later write fails ("cannot start a transaction within a transaction").
                await _rollback_begun(db)
                raise
            try:
                yield db
            except BaseException as exc:
                await self._rollback()
                mapped = self._mapped(exc)
                if mapped is exc:
                    raise
                raise mapped from exc
            try:
                await db.commit()
            except BaseException as exc:
                await self._rollback()
                mapped = self._mapped(exc)
                if mapped is exc:
                    raise
                raise mapped from exc
        for hook in tuple(self.on_commit):
            hook()

    async def _rollback(self) -> None:
        db = self._writer
        try:
            if db.in_transaction:
                await db.rollback()
        except DB_ERRORS:  # the connection is unusable; the caller sees the original error
            log.exception("rollback failed on %s", self.path)

    @asynccontextmanager
    async def read(self) -> AsyncIterator[aiosqlite.Connection]:
        """The read-only connection, inside one read transaction (a consistent snapshot)."""
        self._check_open()
        async with self._read_lock:
            self._check_open()
            db = self._reader
            try:
                await db.execute("BEGIN")
            except BaseException:  # cancelled after BEGIN ran: never keep an old snapshot open
                await _rollback_begun(db)
                raise
            try:
                yield db
            finally:
                if db.in_transaction:
                    await db.rollback()

    async def fetchall(self, sql: str, args: Sequence[object] = ()) -> list[Row]:
        """Convenience: run one query on the reader and return every row (``Row``).

        One statement is one consistent snapshot by itself (autocommit), so this is a single trip to
        the reader's thread, without the BEGIN/ROLLBACK of ``read()``.
        """
        self._check_open()
        async with self._read_lock:
            self._check_open()
            db = self._reader
            db.row_factory = Row
            try:
                return list(await db.execute_fetchall(sql, args))  # type: ignore[arg-type]
            finally:
                db.row_factory = None

    async def fetchone(self, sql: str, args: Sequence[object] = ()) -> Row | None:
        rows = await self.fetchall(sql, args)
        return rows[0] if rows else None

    async def close(self) -> None:
        """Close both connections; idempotent. Waits for a running write transaction to finish."""
        if self._closed:
            return
        async with self._lock:
            if self._closed:
                return
            self._closed = True
            async with self._read_lock:
                await self._reader.close()
            await self._writer.close()
