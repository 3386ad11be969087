"""Helpers of the device-integration tests: a node with scanners and printers, served on 127.0.0.1."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient

from node import config as config_module
from node.config import NodeConfig
from node.hotfolder import ScannerConfig
from node.printing import PrinterConfig
from tests.node.conftest import page_csrf

DESK = "Q1"
FAST_SCANNER = {"debounce": 0.1, "poll_interval": 0.2, "retry_delay": 0.2, "incomplete_retries": 2}


def with_devices(
    config: NodeConfig,
    root: Path,
    *,
    scanner: bool = True,
    printers: tuple[PrinterConfig, ...] | None = None,
    **changes: Any,
) -> NodeConfig:
    """``config`` plus a hot folder for desk Q1 and (default) a folder printer, validated like load()."""
    scanners = (ScannerConfig("quay-1", root / "scan-q1", DESK, **FAST_SCANNER),) if scanner else ()
    if printers is None:
        printers = (PrinterConfig("may-in-q1", kind="folder", folder=root / "printed"),)
    updated = dataclasses.replace(config, scanners=scanners, printers=printers, **changes)
    config_module.validate(updated)
    return updated


async def wait_for(
    check: Callable[[], Awaitable[Any]], *, timeout: float = 20.0, what: str = "condition"
) -> Any:
    """Poll ``check`` until it returns something truthy (bounded)."""
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.05)


def drop(folder: Path, name: str, data: bytes) -> Path:
    """Write like a scanner does: a temp name, fsync, then rename to the final name."""
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{name}.part"
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    final = folder / name
    os.replace(tmp, final)
    return final


async def receive(client: TestClient[Any, Any], key: str = "form-devint-0001", **fields: Any) -> Any:
    """Submit the reception form (birth registration, three documents ticked); returns the response."""
    csrf = await page_csrf(client, "/ho-so/moi?procedure=1.001193")
    data = {
        "csrf": csrf,
        "procedure": "1.001193",
        "applicant.name": "Trần Thị Bình",
        "applicant.id_type": "cccd",
        "applicant.id_number": "001 190 012 345",
        "applicant.phone": "+84912345678",
        "doc": ["0", "1", "2"],
        "action": "receive",
        "idempotency_key": key,
    }
    data.update(fields)
    return await client.post("/ho-so/moi", data=data, allow_redirects=False)


def code_of(response: Any) -> str:
    assert response.status == 303, response.status
    return str(response.headers["Location"]).split("/")[2].split("?")[0]
