"""Hub store fail-stop after an I/O error on the write path (the real-process variant with the fdatasync
shim, the exit status and the restart is ``tests/reliability/test_storage_faults.py``)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from central.app import make_app
from tests.central.helpers import SimNode, hub_clock, hub_of, make_hub_dir


def _inject_commit_failure(store: Any) -> list[str]:
    """COMMIT on the hub's writer fails like EIO from fdatasync; returns the statements that reached it."""
    writer = store._writer
    real = writer.execute
    seen: list[str] = []

    async def execute(sql: str, *args: Any) -> Any:
        seen.append(sql)
        if sql == "COMMIT":
            await real("ROLLBACK")  # what SQLite does by itself after a failed commit fsync
            exc = sqlite3.OperationalError("disk I/O error")
            exc.sqlite_errorcode = 10 | (4 << 8)  # type: ignore[attr-defined]
            raise exc
        return await real(sql, *args)

    writer.execute = execute
    return seen


async def test_hub_io_error_fails_the_store_until_restart(tmp_path: Path, aiohttp_client) -> None:  # type: ignore[no-untyped-def]
    client = await aiohttp_client(make_app(make_hub_dir(tmp_path / "hub"), clock=hub_clock))
    sim = SimNode(client, "CN01")
    await sim.enroll(hub_of(client))
    sim.notes(3)
    status, body = await sim.push(sim.entries)
    assert status == 200, body
    store = hub_of(client).store
    failures: list[Any] = []
    store.on_failure.append(failures.append)
    seen = _inject_commit_failure(store)
    sim.notes(2)
    status, body = await sim.push(sim.entries[4:])
    assert (status, body["error"]) == (503, "storage_failed"), body
    assert len(failures) == 1 and store.failed is failures[0]
    reached = len(seen)
    status, body = await sim.push(sim.entries[4:])
    assert (status, body["error"]) == (503, "storage_failed"), body
    assert len(seen) == reached, "a write reached SQLite after the failure"
    ready = await client.get("/readyz")
    assert ready.status == 503 and "db_writable" in (await ready.json())["failed"]
