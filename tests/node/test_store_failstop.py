"""Fail-stop after an I/O error on the database's write path (PostgreSQL's rule after fsyncgate).

The fault is injected in-process at the one seam there is (the writer connection's commit raising the
``sqlite3.OperationalError`` SQLite gives for EIO from fdatasync); the real-process variant with the
LD_PRELOAD shim, the exit status and the restart is ``tests/reliability/test_storage_faults.py``.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from aiohttp.test_utils import TestClient

from node.health import watchdog_problems
from node.web.keys import NODE
from tests.node.conftest import reception

_SQLITE_IOERR_FSYNC = 10 | (4 << 8)
_SQLITE_FULL = 13


def _sqlite_error(code: int, text: str) -> sqlite3.OperationalError:
    exc = sqlite3.OperationalError(text)
    exc.sqlite_errorcode = code  # type: ignore[attr-defined]
    return exc


def _inject_commit_failure(store: Any, code: int, text: str) -> list[int]:
    """The writer's commits fail with ``code`` while the returned list (of commit attempts) has no
    ``0`` appended; background writers (the print worker) may be the first to meet the fault."""
    writer = store._writer
    real = writer.commit
    calls: list[int] = []

    async def commit() -> None:
        if 0 not in calls:
            calls.append(1)
            await writer.rollback()  # what SQLite does by itself after a failed commit fsync
            raise _sqlite_error(code, text)
        await real()

    writer.commit = commit
    return calls


async def test_io_error_at_commit_fails_the_store_until_restart(
    client: TestClient[Any, Any], token: str
) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    resp = await client.post("/api/v1/dossiers", json=reception(), headers=headers)
    assert resp.status == 201
    node = client.server.app[NODE]
    failures: list[Any] = []
    node.store.on_failure.append(failures.append)
    commits = _inject_commit_failure(node.store, _SQLITE_IOERR_FSYNC, "disk I/O error")

    resp = await client.post("/api/v1/dossiers", json=reception(), headers=headers)
    body = await resp.json()
    assert (resp.status, body["error"]) == (503, "storage_failed"), body
    assert "chưa được xác nhận đã lưu" in body["message"] and "khởi động lại" in body["message"]
    assert "kiểm tra danh sách hồ sơ" in body["message"]
    assert len(failures) == 1 and node.store.failed is failures[0]

    # every later write is refused before it reaches SQLite (no fsync retried), with the same error
    resp = await client.post("/api/v1/dossiers", json=reception(), headers=headers)
    assert (resp.status, (await resp.json())["error"]) == (503, "storage_failed")
    assert len(commits) == 1 and len(failures) == 1, "a write reached SQLite after the failure"
    # staff pages say it in Vietnamese too
    page = await client.post("/api/v1/dossiers", json=reception(), headers={**headers, "Accept": "text/html"})
    assert page.status == 503

    # not ready: /readyz and the systemd watchdog pings stop
    ready = await client.get("/readyz")
    assert ready.status == 503
    assert "db_writable" in (await ready.json())["failed"]
    assert await watchdog_problems(node)
    # reads still answer until the process exits
    resp = await client.get("/api/v1/dossiers", headers=headers)
    assert resp.status == 200


async def test_disk_full_is_not_fail_stop(client: TestClient[Any, Any], token: str) -> None:
    """SQLITE_FULL: SQLite rolled back cleanly and no fsync failed; the same process goes on (D5)."""
    headers = {"Authorization": f"Bearer {token}"}
    node = client.server.app[NODE]
    fault = _inject_commit_failure(node.store, _SQLITE_FULL, "database or disk is full")
    resp = await client.post("/api/v1/dossiers", json=reception(), headers=headers)
    assert (resp.status, (await resp.json())["error"]) == (507, "disk_full")
    assert node.store.failed is None
    fault.append(0)  # space freed
    resp = await client.post("/api/v1/dossiers", json=reception(), headers=headers)
    assert resp.status == 201


def test_cli_and_serve_agree_on_the_exit_status() -> None:
    from node import cli, service

    assert cli.EXIT_STORAGE_FAILED == service.EXIT_STORAGE_FAILED == 75
