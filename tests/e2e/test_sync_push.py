"""The sync client's push against a real hub: batches cut by count and bytes, several in flight, receipts
kept in order, 413 answered by smaller batches, a gap answered by resending from the hub's head."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer

from central.app import make_app
from central.config import load
from central.errors import now_ms
from central.hub import HUB, Hub
from node.sync_client import SyncReport
from protocol import LogHead
from tests.central.helpers import make_hub_dir
from tests.e2e.nodesim import MiniNode
from tests.e2e.realnode import free_port

pytestmark = pytest.mark.e2e


class Recorder:
    """Transport wrapper keeping (method, target, body length, status) of every request."""

    def __init__(self, inner) -> None:  # type: ignore[no-untyped-def]
        self.inner = inner
        self.calls: list[tuple[str, str, int, int]] = []
        self.open = 0
        self.most_open = 0

    async def request(
        self, method: str, target: str, body: bytes, headers: dict[str, str]
    ) -> tuple[int, bytes]:
        self.open += 1
        self.most_open = max(self.most_open, self.open)
        try:
            status, payload = await self.inner.request(method, target, body, headers)
        finally:
            self.open -= 1
        self.calls.append((method, target, len(body), status))
        return status, payload

    async def close(self) -> None:
        await self.inner.close()

    def pushes(self) -> list[tuple[int, int]]:
        return [(size, status) for m, t, size, status in self.calls if m == "POST" and "/logs/" in t]


async def start_hub(tmp_path: Path, **overrides: object) -> tuple[TestServer, Hub, str]:
    config = load(make_hub_dir(tmp_path / "hub").data_dir, environ={}, **overrides)
    app = make_app(config)
    port = free_port()
    server = TestServer(app, host="127.0.0.1", port=port)
    await server.start_server()
    return server, app[HUB], f"http://127.0.0.1:{port}"


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[MiniNode]:
    sim = await MiniNode.create("CN01", tmp_path / "cn01", now_ms)
    yield sim
    await sim.close()


async def enroll(node: MiniNode, hub: Hub, base: str) -> Recorder:
    token = await hub.registry.invite(
        "CN01", "branch", "CN01", hub_url=base, hub_key=hub.public_key, now=now_ms(), ttl_ms=60_000
    )
    await node.enroll(base, token)
    assert node.client is not None
    recorder = Recorder(node.client.transport)
    node.client.transport = recorder
    return recorder


async def notes(node: MiniNode, n: int, size: int = 10) -> None:
    for i in range(n):
        await node.append("bench.note", {"i": i, "pad": "x" * size})


async def held(hub: Hub) -> list[bytes]:
    return await hub.store.entries("CN01", 1, 0, 10_000)


async def own(node: MiniNode) -> list[bytes]:
    rows = await node.store.fetchall("SELECT raw FROM entries WHERE log = 'CN01' ORDER BY seq")
    return [bytes(r[0]) for r in rows]


async def test_pipelined_small_batches_converge_with_receipts_in_order(
    tmp_path: Path, node: MiniNode
) -> None:
    server, hub, base = await start_hub(tmp_path)
    try:
        recorder = await enroll(node, hub, base)
        await notes(node, 20)
        assert node.client is not None
        node.client.batch_entries, node.client.push_depth = 3, 3
        report = await node.client.sync_once()
        assert report.pushed == 21 and report.receipt is not None and report.receipt.seq == 21
        assert await held(hub) == await own(node)
        assert len(recorder.pushes()) == 7 and recorder.most_open == 3
        seqs = [r[0] for r in await node.store.fetchall("SELECT seq FROM sync_receipts ORDER BY rowid")]
        assert seqs == [3, 6, 9, 12, 15, 18, 21]  # stored in order, each verified
        again = await node.client.sync_once()
        assert again.pushed == 0 and len(recorder.pushes()) == 7  # nothing to send: no push at all
    finally:
        await server.close()


async def test_batches_are_cut_by_bytes(tmp_path: Path, node: MiniNode) -> None:
    server, hub, base = await start_hub(tmp_path)
    try:
        recorder = await enroll(node, hub, base)
        await notes(node, 12, size=2000)
        assert node.client is not None
        node.client.batch_bytes = 5000  # two notes of ~2.3 KB per push
        await node.client.sync_once()
        assert await held(hub) == await own(node)
        sizes = [size for size, status in recorder.pushes()]
        assert all(size <= 5000 for size in sizes) and len(sizes) == 6  # genesis rides with two notes
    finally:
        await server.close()


async def test_too_large_halves_the_batch_until_the_hub_takes_it(tmp_path: Path, node: MiniNode) -> None:
    server, hub, base = await start_hub(tmp_path, max_push_entries=4)
    try:
        recorder = await enroll(node, hub, base)
        await notes(node, 19)
        assert node.client is not None
        node.client.batch_entries = 16
        report = await node.client.sync_once()
        assert report.pushed == 20 and await held(hub) == await own(node)
        statuses = [status for _, status in recorder.pushes()]
        assert 413 in statuses and statuses[-1] == 200
        assert node.client.batch_entries <= 4
    finally:
        await server.close()


async def test_a_gap_resends_from_the_hub_head(tmp_path: Path, node: MiniNode) -> None:
    server, hub, base = await start_hub(tmp_path)
    try:
        recorder = await enroll(node, hub, base)
        await notes(node, 9)
        assert node.client is not None
        node.client.batch_entries = 2
        await node.client._push(LogHead("CN01", 1, 0, None), SyncReport())  # the hub holds 1..10
        await notes(node, 10)
        # The client believes the hub holds 16 (a stale state): the hub answers seq_gap with its head 10.
        report = SyncReport()
        head = await node.client._push(LogHead("CN01", 1, 16, None), report)
        assert head.seq == 20 and report.pushed == 10 and await held(hub) == await own(node)
        assert 409 in [status for _, status in recorder.pushes()]
    finally:
        await server.close()
