"""A write transaction whose task is cancelled at any await (aiohttp cancels a handler when its client
disconnects) leaves no transaction open: the next write works. Found by the S8 e2e tests (a node stopped
during a heartbeat left the hub answering 500 to every later write)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from central.store import SqliteStore


async def test_cancelling_a_writer_at_any_point_leaves_no_transaction_open(tmp_path: Path) -> None:
    store = await SqliteStore(tmp_path / "hub.sqlite3").open()
    try:

        async def writer(n: int) -> None:
            async with store.write() as db:
                await db.execute("UPDATE health_probe SET at_ms = ? WHERE id = 1", (n,))
                await db.execute("INSERT OR REPLACE INTO health_probe (id, at_ms) VALUES (1, ?)", (n,))

        cancelled = 0
        for yields in range(60):  # cancel after 0, 1, 2, ... turns of the loop: BEGIN, body, COMMIT
            task = asyncio.create_task(writer(yields))
            for _ in range(yields):
                await asyncio.sleep(0)
            task.cancel()
            result = (await asyncio.gather(task, return_exceptions=True))[0]
            cancelled += isinstance(result, asyncio.CancelledError)
            async with store.write() as db:  # raised "cannot start a transaction within a transaction"
                await db.execute("INSERT OR REPLACE INTO health_probe (id, at_ms) VALUES (1, ?)", (-1,))
        assert cancelled >= 10
        assert not store._conn(reader=False).in_transaction
    finally:
        await store.close()
