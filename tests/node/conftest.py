from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

import aiosqlite
import pytest

from node.blobs import BLOBS_SQL, BlobStore
from node.printing import PRINT_SQL
from node.scan_inbox import SCANS_SQL

Writer = Callable[[], AbstractAsyncContextManager[aiosqlite.Connection]]


async def open_db(path: Path) -> aiosqlite.Connection:
    """A real SQLite file the way the node store opens it: WAL, synchronous=FULL, explicit transactions."""
    db = await aiosqlite.connect(path, isolation_level=None)
    await db.execute("PRAGMA journal_mode=WAL")
    await db.execute("PRAGMA synchronous=FULL")
    await db.execute("PRAGMA foreign_keys=ON")
    await db.executescript(BLOBS_SQL + SCANS_SQL + PRINT_SQL)
    return db


def make_writer(db: aiosqlite.Connection) -> Writer:
    lock = asyncio.Lock()

    @asynccontextmanager
    async def write() -> AsyncIterator[aiosqlite.Connection]:
        async with lock:
            await db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                await db.execute("ROLLBACK")
                raise
            await db.execute("COMMIT")

    return write


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[aiosqlite.Connection]:
    conn = await open_db(tmp_path / "node.sqlite3")
    yield conn
    await conn.close()


@pytest.fixture
def writer(db: aiosqlite.Connection) -> Writer:
    return make_writer(db)


@pytest.fixture
def store(tmp_path: Path) -> BlobStore:
    return BlobStore(tmp_path / "state", low_disk_bytes=0)
