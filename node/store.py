"""The node's SQLite store: one writer connection, one read-only reader connection.

- ``async with store.write() as db:`` takes the writer lock, runs ``BEGIN IMMEDIATE``, commits on a
  clean exit and rolls back on any error. Commit happens before the block's caller answers anyone, so
  "durable before acknowledged" holds with ``synchronous=FULL``. After an SQLite error the connection's
  ``in_transaction`` is checked: SQLite may already have rolled back on its own (sqlite.org
  c3ref/get_autocommit), and a second ROLLBACK would raise and hide the first error.
- ``async with store.read() as db:`` gives the reader (``query_only``); WAL lets it read while the
  writer writes. Reads never see a transaction that has not committed.
- ``close()`` is idempotent; any use after it raises ``StoreClosed``.
- Both connections are SQLCipher connections opened by ``node.dbcipher.connect`` with the node's
  database key (``key``, default: the unlocked keyring of the database's folder, node.atrest).
- A full disk (SQLITE_FULL) surfaces as ``DiskFull`` (507) and an I/O error (SQLITE_IOERR, e.g. EIO from
  fdatasync at commit) as ``StorageError`` (500), each with a Vietnamese message; neither is retried.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import aiosqlite

from node.dbcipher import DB_ERRORS, Row, aconnect
from node.errors import DiskFull, StorageError, StoreClosed

__all__ = ["Store", "storage_error"]

log = logging.getLogger("motcua.node.store")

_SQLITE_IOERR, _SQLITE_FULL = 10, 13


def storage_error(exc: BaseException) -> BaseException:
    """A disk problem under SQLite as the node error staff can act on; anything else unchanged.

    After an I/O error at commit the outcome is not certain (WAL recovery after a crash may still find
    the transaction), so the message says "not confirmed", never "not saved".
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
        return StorageError(
            "Lỗi đọc/ghi ổ đĩa: thao tác chưa được xác nhận đã lưu. Hãy kiểm tra ổ đĩa và tra cứu lại "
            "hồ sơ trước khi nhập lại.",
            detail=str(exc),
        )
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

    @asynccontextmanager
    async def write(self) -> AsyncIterator[aiosqlite.Connection]:
        """A write transaction (BEGIN IMMEDIATE); commits on exit, rolls back on error."""
        self._check_open()
        async with self._lock:
            self._check_open()
            db = self._writer
            try:
                await db.execute("BEGIN IMMEDIATE")
            except DB_ERRORS as exc:
                raise storage_error(exc) from exc
            try:
                yield db
            except BaseException as exc:
                await self._rollback()
                mapped = storage_error(exc)
                if mapped is exc:
                    raise
                raise mapped from exc
            try:
                await db.commit()
            except BaseException as exc:
                await self._rollback()
                mapped = storage_error(exc)
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
            await db.execute("BEGIN")
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
