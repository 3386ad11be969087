"""P3 end to end: a real hub and a real node (servers on 127.0.0.1); the node's clock is injected.

Offline past its lease the node locks the views with personal data (API dossier reads, dossier pages,
search, scans) and says why in Vietnamese, while intake goes on; the next sync renews the lease and
unlocks. Once the hub revokes the node it cannot renew (refused) and stays locked.
"""

from __future__ import annotations

import time
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from node.app import make_app as make_node_app
from node.config import load as load_node_config
from node.sync_client import SyncError
from node.sync_service import SYNC
from tests.e2e.realnode import FAST_LOOKUP, HubRunner, NodeRunner, _csrf, free_port, reception
from tests.node.conftest import PASSWORD

pytestmark = pytest.mark.e2e
HOUR = 3_600_000


async def _clerk(session: aiohttp.ClientSession, base: str) -> None:
    async with session.get(base + "/dang-nhap") as resp:
        csrf = _csrf(await resp.text())
    async with session.post(
        base + "/dang-nhap",
        data={"csrf": csrf, "username": "an.nv", "password": PASSWORD, "next": "/ho-so/moi"},
        headers={"Origin": base},
    ) as resp:
        assert resp.status == 200, await resp.text()


async def test_offline_past_the_lease_locks_pii_views_and_revocation_keeps_them_locked(tmp_path: Any) -> None:
    hub = HubRunner(tmp_path / "hub")
    await hub.start()
    created = await NodeRunner.create(tmp_path / "van", await hub.invite("VAN03"), node_id="VAN03", block=0)
    now = [time.time_ns() // 1_000_000]
    app = make_node_app(
        load_node_config(created.data, {}), lookup_iterations=FAST_LOOKUP, clock=lambda: now[0]
    )
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = TestServer(app, host="127.0.0.1", port=port)
    await server.start_server()
    api = aiohttp.ClientSession(headers={"Authorization": f"Bearer {created.api_token}"})
    browser = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
    try:
        client = app[SYNC].client
        await client.sync_once()
        async with api.post(base + "/api/v1/dossiers", json=reception()) as resp:
            assert resp.status == 201
            code = (await resp.json())["code"]
        await client.sync_once()  # the heartbeat answer carries the lease
        state = await app[SYNC].client.local.state()  # type: ignore[attr-defined]
        assert '"expires"' in state["lease"]
        async with api.get(base + f"/api/v1/dossiers/{code}") as resp:
            assert resp.status == 200
        await _clerk(browser, base)
        async with browser.get(base + f"/ho-so/{code}") as resp:
            assert resp.status == 200

        await app[SYNC].close()  # the van drives out of coverage: no more sync
        now[0] += 72 * HOUR + 60_000
        async with api.get(base + f"/api/v1/dossiers/{code}") as resp:
            body = await resp.json()
            assert (resp.status, body["error"]) == (423, "pii_locked") and "hết hạn" in body["message"]
        for path in (f"/ho-so/{code}", "/tim-kiem?q=Nguy%E1%BB%85n", "/hom-nay", "/ban-quet"):
            async with browser.get(base + path) as resp:
                text = await resp.text()
                assert resp.status == 423 and "Giấy phép ngoại tuyến đã hết hạn" in text, (path, resp.status)
        async with api.post(base + "/api/v1/dossiers", json=reception()) as resp:
            assert resp.status == 201  # intake keeps working
        async with browser.get(base + "/ho-so/moi") as resp:
            assert resp.status == 200  # and so does the intake form

        from node.sync_service import SyncService

        service = await SyncService.open(app[app_node_key()])  # back in coverage: the next sync renews
        assert service is not None
        await service.client.sync_once()
        now[0] = time.time_ns() // 1_000_000 + 60_000
        async with api.get(base + f"/api/v1/dossiers/{code}") as resp:
            assert resp.status == 200

        await hub.hub.registry.revoke("VAN03", after=None, reason="laptop bị mất", now=now[0])
        with pytest.raises(SyncError) as info:
            await service.client.sync_once()
        assert info.value.code == "node_revoked"
        with pytest.raises(SyncError) as info:  # and a heartbeat of its own is refused: no renewal
            await service.client.call("POST", "/v1/sync/heartbeat", b"{}")
        assert info.value.status == 403
        async with api.get(base + f"/api/v1/dossiers/{code}") as resp:
            body = await resp.json()
            assert resp.status == 423 and "thu hồi" in body["message"]
        await service.close()
    finally:
        await api.close()
        await browser.close()
        await server.close()
        await hub.stop()


def app_node_key() -> Any:
    from node.web.keys import NODE

    return NODE
