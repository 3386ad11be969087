"""Relay between branches (central.relay), with a hub and two real nodes on loopback.

A dossier received at CN01 with pickup at CN02: CN01's supplement reaches CN02, and CN02's hand-back
reaches CN01, so both branches show the same state; every entry is forwarded once per mailbox, even when
the outbox is drained again.
"""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest

from central.audit import verify_all
from central.dossiers import DOSSIERS
from central.errors import now_ms
from central.officers import add_officer
from central.relay import RELAY
from protocol import canonical, decode
from tests.e2e.realnode import HubRunner, NodeRunner, eventually

pytestmark = pytest.mark.e2e


async def _officer(hub: HubRunner, code: str, action: str, fields: dict[str, object], token: str) -> None:
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as session:
        async with session.post(
            f"{hub.base}/api/v1/officer/dossiers/{code}/{action}", data=canonical(fields)
        ) as resp:
            assert resp.status == 201, await resp.text()


async def _label(node: NodeRunner, code: str) -> str | None:
    status, body = await node.call("GET", f"/api/v1/dossiers/{code}")
    return str(body["status_label"]) if status == 200 else None


async def _forwards(hub: HubRunner, box: str) -> list[tuple[str, int, int]]:
    rows = await hub.hub.store.fetchall(
        "SELECT raw FROM entries WHERE log = ? AND kind = 'hub.forward' ORDER BY seq", (box,)
    )
    inner = [decode(bytes(r[0]))["body"]["entry"] for r in rows]
    return [(e["log"], e["epoch"], e["seq"]) for e in inner]


async def test_events_at_either_branch_reach_the_other(tmp_path: Path) -> None:
    hub = HubRunner(tmp_path / "hub")
    await hub.start()
    a = await NodeRunner.create(tmp_path / "cn01", await hub.invite("CN01"), node_id="CN01", block=0)
    b = await NodeRunner.create(tmp_path / "cn02", await hub.invite("CN02"), node_id="CN02", block=5)
    await a.start()
    await b.start()
    try:
        code = (await a.receive(pickup="CN02"))["code"]
        # The reception is relayed on ingest: the pickup branch knows the dossier before any decision.
        received = await _label(a, code)
        await eventually(lambda: _same(b, code, received), what="the reception at CN02")

        officer = await add_officer(hub.hub.store, "o1", "Cán bộ xử lý", now=now_ms())
        await _officer(hub, code, "transfer", {"agency": "UBND phường Tây Hồ"}, officer)
        await _officer(hub, code, "request_supplement", {"items": [{"name": "Bản sao CCCD"}]}, officer)
        await eventually(lambda: _paused(a, code), what="the supplement request at CN01")
        # CN01 records the supplement it received; CN02 sees it.
        status, body = await a.call(
            "POST", f"/api/v1/dossiers/{code}/events", {"action": "supplement_provided"}
        )
        assert status == 201, body
        after_supplement = await _label(a, code)
        await eventually(lambda: _same(b, code, after_supplement), what="the supplement at CN02")

        await _officer(hub, code, "result_ready", {"outcome": "approved"}, officer)
        await eventually(lambda: _same(b, code, "Đã xử lý xong"), what="the result at CN02")
        status, body = await b.call(
            "POST",
            f"/api/v1/dossiers/{code}/events",
            {"action": "return", "recipient": {"name": "Nguyễn Văn An"}},
        )
        assert status == 201, body
        # CN02 hands the result back: after syncing, CN01 shows it too.
        await eventually(lambda: _same(a, code, "Đã trả kết quả"), what="the return at CN01")
        assert (await a.dossier(code))["timeline"][-1]["kind"] == "dossier.returned"

        # Exactly once per mailbox, even if the whole outbox is drained again.
        relay = hub.app[RELAY]  # type: ignore[index]
        await eventually(relay.idle, what="the outbox drained")
        to_a, to_b = await _forwards(hub, "hub.CN01"), await _forwards(hub, "hub.CN02")
        assert all(log == "CN02" for log, _, _ in to_a) and len(to_a) == len(set(to_a)) >= 1
        assert all(log in ("CN01", "hub.CN01") for log, _, _ in to_b) and len(to_b) == len(set(to_b)) >= 3
        async with hub.hub.store.write() as db:
            await db.execute("UPDATE relay_outbox SET done_ms = NULL")
        while await relay.drain():
            pass
        assert await _forwards(hub, "hub.CN01") == to_a and await _forwards(hub, "hub.CN02") == to_b
        state = await hub.app[DOSSIERS].refresh(code)  # type: ignore[index]
        assert state is not None and int(state.status) == 10
    finally:
        await a.stop()
        await b.stop()
    assert (await verify_all(hub.hub)).problems == []
    await hub.stop()


async def _same(node: NodeRunner, code: str, label: str | None) -> bool:
    return label is not None and await _label(node, code) == label


async def _paused(node: NodeRunner, code: str) -> bool:
    return "supplement_provided" in (await node.dossier(code)).get("actions", [])
