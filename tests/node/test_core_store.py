"""Store: one writer, commit/rollback, read isolation, idempotent close, migrations applied once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from node.dbcipher import IntegrityError, OperationalError, aconnect
from node.errors import StoreClosed
from node.migrations import MIGRATIONS, applied, apply_migrations, split_sql
from node.store import Store, run_sync
from tests.tools import keyring


@pytest.fixture(autouse=True)
def _data_key(tmp_path: Path) -> None:
    keyring(tmp_path)  # the folder's data key: Store.open finds it like a node's


async def test_pragmas_and_migrations(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "a.sqlite3")
    try:
        async with store.write() as db:
            async with db.execute("PRAGMA journal_mode") as c:
                assert (await c.fetchone())[0] == "wal"
            async with db.execute("PRAGMA synchronous") as c:
                assert (await c.fetchone())[0] == 2  # FULL
            async with db.execute("PRAGMA foreign_keys") as c:
                assert (await c.fetchone())[0] == 1
            assert await applied(db) == {name for name, _ in MIGRATIONS}
            # applying again changes nothing
        async with store.read() as db:
            async with db.execute("SELECT count(*) FROM schema_migrations") as c:
                assert (await c.fetchone())[0] == len(MIGRATIONS)
    finally:
        await store.close()
    reopened = await Store.open(tmp_path / "a.sqlite3")
    await reopened.close()


async def test_write_commits_and_rollback_on_error(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "a.sqlite3")
    try:
        async with store.write() as db:
            await db.execute("INSERT INTO lookup_codes VALUES ('X-1', 'AAAA', 1)")
        with pytest.raises(RuntimeError):
            async with store.write() as db:
                await db.execute("INSERT INTO lookup_codes VALUES ('X-2', 'BBBB', 1)")
                raise RuntimeError("boom")
        with pytest.raises(IntegrityError):
            async with store.write() as db:
                await db.execute("INSERT INTO lookup_codes VALUES ('X-3', 'CCCC', 1)")
                await db.execute("INSERT INTO lookup_codes VALUES ('X-1', 'DDDD', 1)")
        rows = await store.fetchall("SELECT dossier FROM lookup_codes ORDER BY dossier")
        assert [r[0] for r in rows] == ["X-1"]
        async with store.write() as db:  # the writer is usable again after both failures
            await db.execute("INSERT INTO lookup_codes VALUES ('X-4', 'EEEE', 1)")
        assert len(await store.fetchall("SELECT 1 FROM lookup_codes")) == 2
    finally:
        await store.close()


async def test_reader_does_not_see_uncommitted_writes(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "a.sqlite3")
    try:
        async with store.write() as db:
            await db.execute("INSERT INTO lookup_codes VALUES ('X-1', 'AAAA', 1)")
            assert await store.fetchall("SELECT 1 FROM lookup_codes") == []
        assert len(await store.fetchall("SELECT 1 FROM lookup_codes")) == 1
        async with store.read() as db:
            with pytest.raises(OperationalError):  # the reader is query_only
                await db.execute("DELETE FROM lookup_codes")
    finally:
        await store.close()


async def test_close_is_idempotent_and_use_after_close_raises(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "a.sqlite3")
    await store.close()
    await store.close()
    assert store.closed
    with pytest.raises(StoreClosed):
        async with store.write():
            pass
    with pytest.raises(StoreClosed):
        await store.fetchall("SELECT 1")


async def test_a_failing_migration_step_leaves_nothing(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "a.sqlite3")
    await store.close()
    db = await aconnect(tmp_path / "a.sqlite3", keyring(tmp_path).db_key)
    try:
        bad = ("0099_bad", "CREATE TABLE half_done (x INTEGER);\nCREATE TABLE half_done (x INTEGER);\n")
        with pytest.raises(OperationalError):
            await apply_migrations(db, (*MIGRATIONS, bad))
        assert "0099_bad" not in await applied(db)
        async with db.execute("SELECT count(*) FROM sqlite_master WHERE name = 'half_done'") as c:
            assert (await c.fetchone())[0] == 0
        assert await apply_migrations(db, MIGRATIONS) == []
    finally:
        await db.close()


def test_split_sql_keeps_statements_whole() -> None:
    script = "-- comment\nCREATE TABLE a (x TEXT DEFAULT ';');\n\nCREATE INDEX i ON a (x);\n"
    assert split_sql(script) == ["CREATE TABLE a (x TEXT DEFAULT ';');", "CREATE INDEX i ON a (x);"]
    with pytest.raises(ValueError):
        split_sql("CREATE TABLE b (x")


async def test_run_sync_runs_in_the_callers_transaction(tmp_path: Path) -> None:
    """Statements run through ``run_sync`` (one hand-off to the writer's thread) commit and roll back
    with the ``store.write()`` block around them."""

    def insert(conn: Any, code: str) -> int:
        conn.execute("INSERT INTO lookup_codes VALUES (?, 'AAAA', 1)", (code,))
        return int(conn.execute("SELECT count(*) FROM lookup_codes").fetchone()[0])

    store = await Store.open(tmp_path / "a.sqlite3")
    try:
        async with store.write() as db:
            assert await run_sync(db, insert, "X-1") == 1
        with pytest.raises(RuntimeError):
            async with store.write() as db:
                assert await run_sync(db, insert, "X-2") == 2
                raise RuntimeError("boom")
        with pytest.raises(IntegrityError):  # an error inside fn reaches the caller
            async with store.write() as db:
                await run_sync(db, insert, "X-1")
        rows = await store.fetchall("SELECT dossier FROM lookup_codes ORDER BY dossier")
        assert [r[0] for r in rows] == ["X-1"]
    finally:
        await store.close()
