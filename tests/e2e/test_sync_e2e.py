"""A hub and two nodes on real loopback ports: offline intake, convergence, officer result to the
pickup branch, scans intact, interrupted uploads, revocation."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer

from central.app import make_app
from central.config import load
from central.dossiers import DOSSIERS
from central.errors import now_ms
from central.hub import HUB
from central.officers import add_officer
from node.sync_client import HttpTransport, SyncError
from protocol import b64url_encode, canonical
from protocol.dossier import hash_lookup_code
from tests.central.helpers import make_hub_dir
from tests.e2e.nodesim import MiniNode
from tests.protocol.helpers import received

pytestmark = pytest.mark.e2e
CODE_A = "000.00.01.H26-261123-0012"
CODE_B = "000.00.01.H26-261123-5001"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_two_nodes_converge_and_results_reach_the_pickup_branch(tmp_path: Path) -> None:
    config = load(make_hub_dir(tmp_path / "hub").data_dir, environ={})
    app = make_app(config)
    port = free_port()
    server = TestServer(app, host="127.0.0.1", port=port)
    await server.start_server()
    base = f"http://127.0.0.1:{port}"
    hub = app[HUB]
    cn01 = await MiniNode.create("CN01", tmp_path / "cn01", now_ms)
    cn02 = await MiniNode.create("CN02", tmp_path / "cn02", now_ms)
    try:
        for node in (cn01, cn02):
            token = await hub.registry.invite(
                node.node,
                "branch",
                node.node,
                hub_url=base,
                hub_key=hub.public_key,
                now=now_ms(),
                ttl_ms=60_000,
            )
            await node.enroll(base, token)
        # Intake on both while the hub is unreachable.
        lookup = hash_lookup_code(CODE_A, "ABCD2345")
        await cn01.append("dossier.received", received(CODE_A, pickup="CN02", lookup=lookup.to_body()))
        scan = os.urandom(2 * 1_048_576 + 12345)
        sha = await cn01.attach(CODE_A, scan)
        await cn02.append("dossier.received", received(CODE_B, pickup="CN02", actor="clerk.cn02"))
        for node in (cn01, cn02):
            assert node.client is not None
            live = node.client.transport
            node.client.transport = HttpTransport(f"http://127.0.0.1:{free_port()}", timeout=2)
            with pytest.raises(SyncError) as info:
                await node.client.sync_once()
            assert info.value.code == "unreachable" and info.value.retryable
            await node.client.transport.close()  # type: ignore[attr-defined]
            node.client.transport = live
        # Hub up: both converge.
        report1 = await cn01.client.sync_once()  # type: ignore[union-attr]
        report2 = await cn02.client.sync_once()  # type: ignore[union-attr]
        assert (report1.pushed, report2.pushed) == (3, 2)
        assert report1.chunks == 3
        assert hub.blobs.path_for(sha).read_bytes() == scan
        for node in (cn01, cn02):
            local = await node.store.fetchall(
                "SELECT raw FROM entries WHERE log = ? ORDER BY seq", (node.node,)
            )
            assert await hub.store.entries(node.node, 1, 0, 100) == [bytes(r[0]) for r in local]
        assert await cn01.client.local.hub_holds(CODE_A)  # type: ignore[union-attr]
        again = await cn01.client.sync_once()  # type: ignore[union-attr]
        assert (again.pushed, again.chunks) == (0, 0)
        # An officer records the result with its file; it reaches the pickup branch CN02.
        token = await add_officer(hub.store, "o1", "Officer", now=now_ms())
        await app[DOSSIERS].refresh(CODE_A)
        import aiohttp

        result_file = b"%PDF-1.7 result" * 1000
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as session:
            for action, fields in (
                ("transfer", {"agency": "UBND phường"}),
                (
                    "result_ready",
                    {
                        "outcome": "approved",
                        "file": {
                            "media_type": "application/pdf",
                            "pages": 1,
                            "data": b64url_encode(result_file),
                        },
                    },
                ),
            ):
                async with session.post(
                    f"{base}/api/v1/officer/dossiers/{CODE_A}/{action}", data=canonical(fields)
                ) as resp:
                    assert resp.status == 201, await resp.text()
            async with session.get(f"{base}/api/v1/track/{CODE_A}?k=ABCD-2345") as resp:
                assert resp.status == 200
                view = await resp.json()
            async with session.get(f"{base}/api/v1/track/{CODE_A}?k=WRONG234") as resp:
                assert resp.status == 404
        assert view["status"] == 9 and view["result_ready"] and "applicant" not in view
        pulled = await cn02.client.sync_once()  # type: ignore[union-attr]
        assert pulled.pulled >= 3
        forwarded = await cn02.store.fetchall("SELECT kind FROM entries WHERE log = 'hub.CN02' ORDER BY seq")
        # CN01's reception and scan come first (CN02 needs them to fold the dossier), then the decisions.
        assert [k for (k,) in forwarded] == ["log.genesis"] + ["hub.forward"] * 5
        own = await cn01.client.sync_once()  # type: ignore[union-attr]
        assert own.pulled == 4  # genesis, transferred, attachment, result_ready in hub.CN01
        # Everything the hub stored and signed verifies.
        from central.audit import verify_all

        audit = await verify_all(hub)
        assert audit.problems == [] and audit.receipts >= 2
        # Revocation reaches the node as a status it can show.
        await hub.registry.revoke("CN02", after=None, reason="stolen", now=now_ms())
        with pytest.raises(SyncError) as info:
            await cn02.client.sync_once()  # type: ignore[union-attr]
        assert info.value.code == "node_revoked" and not info.value.retryable
        assert (await cn02.client.local.state())["hub_status"] == "revoked"  # type: ignore[union-attr]
    finally:
        await cn01.close()
        await cn02.close()
        await server.close()


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


async def test_an_interrupted_upload_costs_at_most_one_chunk(tmp_path: Path) -> None:
    config = load(make_hub_dir(tmp_path / "hub").data_dir, environ={})
    app = make_app(config)
    port = free_port()
    server = TestServer(app, host="127.0.0.1", port=port)
    await server.start_server()
    base = f"http://127.0.0.1:{port}"
    hub = app[HUB]
    node = await MiniNode.create("VAN03", tmp_path / "van", now_ms)
    try:
        token = await hub.registry.invite(
            "VAN03", "van", "Xe 3", hub_url=base, hub_key=hub.public_key, now=now_ms(), ttl_ms=60_000
        )
        await node.enroll(base, token)
        await node.append("dossier.received", received(CODE_A, pickup="VAN03"))
        scan = os.urandom(4 * 1_048_576 + 7)
        sha = await node.attach(CODE_A, scan)
        assert node.client is not None
        flaky = DropAfter(node.client.transport, 2)  # type: ignore[arg-type]
        node.client.transport = flaky
        with pytest.raises(SyncError):
            await node.client.sync_once()
        flaky.left = 100
        await node.client.sync_once()
        assert flaky.puts == 5  # 2 before the drop + the 3 missing: nothing sent twice
        assert hub.blobs.path_for(sha).read_bytes() == scan
    finally:
        await node.close()
        await server.close()
