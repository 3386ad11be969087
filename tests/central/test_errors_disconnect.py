"""A client that disconnects mid-request (a link reset during a chunk upload) is a client-side status in
the hub's logs and metrics, not a ``500`` "I/O error" with a traceback (found by N4)."""

from __future__ import annotations

import json
import logging

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from central.errors import error_middleware


async def _lost(request: web.Request) -> web.Response:
    raise ConnectionResetError("Connection lost")  # what aiohttp sets on the body being read


async def _disk(request: web.Request) -> web.Response:
    raise OSError(5, "Input/output error")


async def test_a_lost_connection_is_not_a_server_error(caplog: pytest.LogCaptureFixture) -> None:
    app = web.Application(middlewares=[error_middleware])
    app.router.add_put("/lost", _lost)
    app.router.add_put("/disk", _disk)
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        with caplog.at_level(logging.INFO, logger="motcua.central"):
            lost = await client.put("/lost", data=b"x")
            assert lost.status == 400
            assert json.loads(await lost.read())["error"] == "client_disconnected"
            assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
            disk = await client.put("/disk", data=b"x")  # a real I/O error stays a server fault
            assert disk.status == 500
            assert [r for r in caplog.records if r.levelno >= logging.ERROR]
