"""The receipt of a dossier received on a served node goes through a real cupsd raw queue to 127.0.0.1."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from node.app import make_app
from node.config import NodeConfig
from node.devices import DEVICES
from node.printing import PrinterConfig
from node.web.keys import NODE
from tests.node.conftest import FAST_LOOKUP, login
from tests.node.devint import code_of, receive, wait_for, with_devices
from tests.node.test_cups import Listener, cupsd, printer  # noqa: F401  (fixtures: a private cupsd)

pytestmark = [pytest.mark.cups, pytest.mark.xdist_group("cups")]


async def test_receipt_at_intake_reaches_the_printer_through_cups(
    config: NodeConfig,
    token: str,
    tmp_path: Path,
    printer: tuple[PrinterConfig, Listener],  # noqa: F811
    aiohttp_client: Callable[..., Awaitable[TestClient[Any, Any]]],
) -> None:
    cups_printer, listener = printer
    client = await aiohttp_client(
        make_app(
            with_devices(config, tmp_path, scanner=False, printers=(cups_printer,)),
            lookup_iterations=FAST_LOOKUP,
            print_poll=0.3,
        )
    )
    await login(client)
    code = code_of(await receive(client, key="form-cups-00001"))
    captured = await asyncio.wait_for(listener.jobs.get(), 30)

    async def printed() -> list[Any]:
        rows = await client.app[NODE].store.fetchall("SELECT status, pdf_sha256, cups_job FROM print_jobs")
        return rows if rows and rows[0][0] == "printed" else []

    [row] = await wait_for(printed, timeout=30, what="CUPS to finish the job")
    assert captured == client.app[DEVICES].blobs.read_bytes(row[1])  # byte for byte the rendered receipt
    assert captured.startswith(b"%PDF-") and row[2].startswith(cups_printer.queue + "-")
    page = await (await client.get("/may-in")).text()
    assert "Sẵn sàng" in page and code in page and "Đã in" in page
