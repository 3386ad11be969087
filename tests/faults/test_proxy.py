"""The fault proxy does what it says, against a real aiohttp server (tests for the test tool)."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from aiohttp import web

from tests.faults.proxy import FaultProxy, Faults


@pytest.fixture
async def counting_server():  # type: ignore[no-untyped-def]
    hits: list[bytes] = []

    async def handle(request: web.Request) -> web.Response:
        hits.append(await request.read())
        return web.Response(body=b"x" * 20000)

    app = web.Application()
    app.router.add_post("/push", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield port, hits
    await runner.cleanup()


async def post(url: str) -> bytes:
    async with aiohttp.ClientSession() as session, session.post(url + "/push", data=b"entry") as resp:
        return await resp.read()


async def test_clean_forwarding(counting_server) -> None:  # type: ignore[no-untyped-def]
    port, hits = counting_server
    proxy = FaultProxy(port, seed=1)
    await proxy.start()
    assert len(await post(proxy.url)) == 20000 and hits == [b"entry"]
    await proxy.stop()


@pytest.mark.parametrize("fate", ["ack_loss", "truncate", "reset"])
async def test_response_faults_reach_the_client(counting_server, fate: str) -> None:  # type: ignore[no-untyped-def]
    port, hits = counting_server
    proxy = FaultProxy(port, seed=2, faults=Faults(**{fate: 1.0}))
    await proxy.start()
    with pytest.raises((aiohttp.ClientError, asyncio.TimeoutError)):
        body = await post(proxy.url)
        assert len(body) == 20000  # a reset that fell after the whole response still counts as a failure
    if fate == "ack_loss":
        assert hits == [b"entry"]  # the hub got (and committed) it; only the answer was lost
        assert proxy.count("response_dropped") == 1
    await proxy.stop()


async def test_replay_sends_the_same_request_again(counting_server) -> None:  # type: ignore[no-untyped-def]
    port, hits = counting_server
    proxy = FaultProxy(port, seed=3, faults=Faults(replay=1.0))
    await proxy.start()
    await post(proxy.url)
    for _ in range(100):
        if len(hits) == 2:
            break
        await asyncio.sleep(0.02)
    assert hits == [b"entry", b"entry"]
    await proxy.stop()


async def test_partition_then_heal(counting_server) -> None:  # type: ignore[no-untyped-def]
    port, hits = counting_server
    proxy = FaultProxy(port, seed=4)
    await proxy.start()
    proxy.partition(30)
    with pytest.raises(aiohttp.ClientError):
        await post(proxy.url)
    assert hits == []
    proxy.heal()
    assert len(await post(proxy.url)) == 20000
    await proxy.stop()


async def test_same_seed_same_fates(counting_server) -> None:  # type: ignore[no-untyped-def]
    port, _ = counting_server
    fates = []
    for _ in range(2):
        proxy = FaultProxy(port, seed=99, faults=Faults(refuse=0.3, ack_loss=0.3))
        await proxy.start()
        for _ in range(8):
            try:
                await post(proxy.url)
            except aiohttp.ClientError:
                pass
        fates.append([e for _, _, e in proxy.events if e in {"clean", "refuse", "ack_loss"}])
        await proxy.stop()
    assert fates[0] == fates[1] and len(set(fates[0])) > 1
