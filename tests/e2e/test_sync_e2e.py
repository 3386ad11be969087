"""Scans from a real node reach the hub intact, and an interrupted upload resends at most one chunk.

The node is the real one (store, journal, projections, sync store and client from ``SyncService``); the
attachment is appended through the journal as the scanner integration does, after the file is staged
durably in the node's blob store.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest

from node.blobs import BlobStore
from node.config import load as load_node_config
from node.provision import Node
from node.sync_client import HttpTransport, SyncError
from node.sync_service import SyncService
from protocol import manifest_for_bytes
from tests.e2e.realnode import FAST_LOOKUP, HubRunner, NodeRunner, reception

pytestmark = pytest.mark.e2e


async def _attach(node: Node, code: str, data: bytes) -> str:
    """Stage the scan durably, then append its attachment entry (what the scanner integration does)."""
    blobs = BlobStore(node.config.data_dir, low_disk_bytes=0)
    staged = await asyncio.to_thread(blobs.stage_bytes, data)
    manifest = manifest_for_bytes(data, "application/pdf", 2)
    assert manifest.sha256 == staged.sha256
    body = {"dossier": code, "document": "CCCD", "role": "document", "manifest": manifest.to_body()}
    async with node.store.write() as db:
        await node.journal.append(db, "dossier.attachment", body, actor="an.nv")
    return manifest.sha256


class DropAfter:
    """Transport that lets ``n`` chunk uploads through, then fails like a dropped link."""

    def __init__(self, inner: HttpTransport, n: int) -> None:
        self.inner, self.left, self.puts = inner, n, 0

    async def request(
        self, method: str, target: str, body: bytes, headers: dict[str, str]
    ) -> tuple[int, bytes]:
        if method == "PUT":
            if self.left == 0:
                raise SyncError("unreachable", "link dropped")
            self.left -= 1
            self.puts += 1
        return await self.inner.request(method, target, body, headers)

    async def close(self) -> None:
        await self.inner.close()


async def test_scans_arrive_intact_and_an_interrupted_upload_costs_at_most_one_chunk(tmp_path: Path) -> None:
    hub = HubRunner(tmp_path / "hub")
    await hub.start()
    created = await NodeRunner.create(tmp_path / "van", await hub.invite("VAN03"), node_id="VAN03", block=0)
    node = await Node.open(load_node_config(created.data, {}), lookup_iterations=FAST_LOOKUP)
    service = await SyncService.open(node)
    assert service is not None
    try:
        code = (await node.desk.receive(reception(), actor="an.nv")).code
        small = os.urandom(2 * 1_048_576 + 12345)
        big = os.urandom(4 * 1_048_576 + 7)
        sha_small = await _attach(node, code, small)
        sha_big = await _attach(node, code, big)
        flaky = DropAfter(service.transport, 2)
        service.client.transport = flaky
        with pytest.raises(SyncError) as info:
            await service.client.sync_once()
        assert info.value.code == "unreachable"
        flaky.left = 100
        report = await service.client.sync_once()
        assert flaky.puts == 8  # 3 + 5 chunks: 2 before the drop, the 6 missing after; none twice
        assert report.chunks == 6 and report.pushed == 0  # the entries went up before the drop
        assert hub.hub.blobs.path_for(sha_small).read_bytes() == small
        assert hub.hub.blobs.path_for(sha_big).read_bytes() == big
        again = await service.client.sync_once()
        assert (again.pushed, again.chunks) == (0, 0)
    finally:
        await service.close()
        await node.close()
        await hub.stop()


class DropNeed:
    """Transport that fails the ``n``-th ``blobs/need`` like a dropped link (counts the chunk uploads)."""

    def __init__(self, inner: HttpTransport, n: int) -> None:
        self.inner, self.n, self.needs, self.puts = inner, n, 0, 0

    async def request(
        self, method: str, target: str, body: bytes, headers: dict[str, str]
    ) -> tuple[int, bytes]:
        if target == "/v1/sync/blobs/need":
            self.needs += 1
            if self.needs == self.n:
                raise SyncError("unreachable", "link dropped")
        if method == "PUT":
            self.puts += 1
        return await self.inner.request(method, target, body, headers)

    async def close(self) -> None:
        await self.inner.close()


async def test_a_blob_is_recorded_as_held_only_once_the_hub_acknowledged_it(tmp_path: Path) -> None:
    """Chunks go up with ``?ack=later``; the node records a blob as held (``sync_blobs``, what retention
    trusts) only from the ``need`` answer after the upload. When that answer is lost, nothing is recorded
    and the next round records both blobs without sending a chunk again."""
    hub = HubRunner(tmp_path / "hub")
    await hub.start()
    created = await NodeRunner.create(tmp_path / "van", await hub.invite("VAN03"), node_id="VAN03", block=0)
    node = await Node.open(load_node_config(created.data, {}), lookup_iterations=FAST_LOOKUP)
    service = await SyncService.open(node)
    assert service is not None
    try:
        code = (await node.desk.receive(reception(), actor="an.nv")).code
        small = os.urandom(1_048_576 + 10)
        big = os.urandom(3 * 1_048_576)
        shas = {await _attach(node, code, small), await _attach(node, code, big)}
        flaky = DropNeed(service.transport, 2)  # the first need answers, the acknowledging one is lost
        service.client.transport = flaky
        with pytest.raises(SyncError) as info:
            await service.client.sync_once()
        assert info.value.code == "unreachable" and flaky.puts == 5
        assert await node.store.fetchall("SELECT sha256 FROM sync_blobs") == []
        report = await service.client.sync_once()
        assert report.chunks == 0 and flaky.puts == 5  # nothing sent twice
        assert {r[0] for r in await node.store.fetchall("SELECT sha256 FROM sync_blobs")} == shas
        assert hub.hub.blobs.path_for(min(shas)).is_file() and hub.hub.blobs.path_for(max(shas)).is_file()
    finally:
        await service.close()
        await node.close()
        await hub.stop()


class RefusePush:
    """Transport whose pushes the hub refuses (an overloaded or misconfigured hub: 503), the rest through."""

    def __init__(self, inner: HttpTransport) -> None:
        self.inner = inner

    async def request(
        self, method: str, target: str, body: bytes, headers: dict[str, str]
    ) -> tuple[int, bytes]:
        if method == "POST" and target.startswith("/v1/sync/logs/"):
            raise SyncError("unavailable", "hub overloaded", status=503)
        return await self.inner.request(method, target, body, headers)

    async def close(self) -> None:
        await self.inner.close()


async def test_a_round_that_fails_after_the_hello_still_reports_the_backlog(tmp_path: Path) -> None:
    """M1 "lag > threshold" from a live node: the hub answers the hello but refuses every push; the
    failed round still sends its heartbeat with the backlog and the error, so the dashboard can show the
    node lagging (and why) instead of only "offline"."""
    hub = HubRunner(tmp_path / "hub")
    await hub.start()
    created = await NodeRunner.create(tmp_path / "cn", await hub.invite("CN09"), node_id="CN09", block=0)
    node = await Node.open(load_node_config(created.data, {}), lookup_iterations=FAST_LOOKUP)
    service = await SyncService.open(node)
    assert service is not None
    try:
        await node.desk.receive(reception(), actor="an.nv")
        service.client.transport = RefusePush(service.transport)
        with pytest.raises(SyncError) as info:
            await service.client.sync_once()
        assert info.value.code == "unavailable"
        async with hub.hub.store.read() as db:
            rows = await (
                await db.execute("SELECT body FROM heartbeats WHERE node = ? ORDER BY received_ms", ("CN09",))
            ).fetchall()
        assert rows, "no heartbeat after the failed round"
        beat = json.loads(rows[-1][0])
        assert beat["unacked_entries"] >= 1 and beat["oldest_unacked_ms"] is not None
        assert "unavailable" in (beat["last_error"] or "")
    finally:
        await service.close()
        await node.close()
        await hub.stop()
