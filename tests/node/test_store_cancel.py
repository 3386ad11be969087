"""A node store transaction whose task is cancelled at any await (aiohttp cancels a handler when its
client disconnects) leaves no transaction open: the next write works, and the reader never keeps an old
snapshot (the same gap the S8 e2e tests found in the hub's store)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from node.store import Store
from tests.tools import keyring


async def test_cancelling_at_any_await_leaves_no_transaction_open(tmp_path: Path) -> None:
    keyring(tmp_path)  # the folder's data key: Store.open finds it like a node's
    store = await Store.open(tmp_path / "node.sqlite3")
    try:
        async with store.write() as db:
            await db.execute("CREATE TABLE probe (id INTEGER PRIMARY KEY, n INTEGER NOT NULL)")
            await db.execute("INSERT INTO probe (id, n) VALUES (1, 0)")

        async def writer(n: int) -> None:
            async with store.write() as db:
                await db.execute("UPDATE probe SET n = ? WHERE id = 1", (n,))
                await db.execute("UPDATE probe SET n = n + 0 WHERE id = 1")

        async def reader() -> None:
            async with store.read() as db:
                await (await db.execute("SELECT n FROM probe")).fetchall()

        cancelled = 0
        for yields in range(60):  # cancel after 0, 1, 2, ... turns of the loop: BEGIN, body, COMMIT
            tasks = [asyncio.create_task(writer(yields)), asyncio.create_task(reader())]
            for _ in range(yields):
                await asyncio.sleep(0)
            for task in tasks:
                task.cancel()
            results = await asyncio.gather(*tasks, return_exceptions=True)
            cancelled += sum(isinstance(r, asyncio.CancelledError) for r in results)
            # As aiohttp does with a cancelled handler: drop the task and its exception. (A traceback kept
            # alive keeps the cancelled reader's half-read cursor, and so its snapshot, alive with it.)
            del tasks, results
            async with store.write() as db:  # raised "cannot start a transaction within a transaction"
                await db.execute("UPDATE probe SET n = ? WHERE id = 1", (-yields,))
            async with store.read() as db:  # an old snapshot would still show the previous value
                row = await (await db.execute("SELECT n FROM probe")).fetchone()
            assert row[0] == -yields
        assert cancelled >= 10
    finally:
        await store.close()
