"""Review queues: each decision is a signed hub entry in the right mailbox, applied in the same
transaction, and the fold (tracking, lists) follows it."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient

from central.web import WEB
from protocol import ChainState, Entry, verify_chain
from tests.central.helpers import hub_clock, hub_of
from tests.central.webhelpers import LOOKUP, Branch, add_user, csrf_of, forked, login, settle, table


async def mailbox(client: TestClient, log: str) -> list[Entry]:
    """Every entry of a hub log, its whole chain verified with the hub's key."""
    hub = hub_of(client)
    raws = await hub.store.entries(log, 1, 0, 1000)
    verify_chain(ChainState.start(log, 1, hub.public_key), raws)
    return [Entry.parse(r) for r in raws]


async def status_of(client: TestClient, code: str) -> int:
    resp = await client.get(f"/api/v1/track/{code}?k={LOOKUP}")
    body: dict[str, Any] = await resp.json()
    return int(body["status"])


async def _admin(client: TestClient) -> str:
    await add_user(client, "admin1", "admin")
    assert (await login(client, "admin1")).status == 303
    return await csrf_of(client, "/admin/review")


async def test_accepting_an_entry_held_after_a_revocation_cut_lets_it_into_the_fold(
    client: TestClient,
) -> None:
    branch = await Branch.enroll(client)
    code = branch.receive()
    await branch.push()
    branch.sim.append("dossier.processing", {"dossier": code, "actor": "clerk1", "step": "processing"})
    await branch.push()
    await hub_of(client).registry.revoke("CN01", after=2, reason="máy bị mất", now=hub_clock.now)
    await client.server.app[WEB].dossiers.refresh(code)
    await settle(client)
    assert await status_of(client, code) == 2  # the processing step is held out
    csrf = await _admin(client)
    page = await (await client.get("/admin/review")).text()
    assert "CN01/1:3" in page and "dossier.processing" in page
    resp = await client.post(
        "/admin/review/quarantine/CN01/1/3",
        data={"csrf": csrf, "decision": "accepted", "note": "Cán bộ xác nhận thao tác trước khi mất máy"},
    )
    assert resp.status == 200 and "Không có bản ghi nào chờ xem xét" in await resp.text()
    decisions = [e for e in await mailbox(client, "hub.CN01") if e.kind == "hub.quarantine_decision"]
    assert [d.body["decision"] for d in decisions] == ["accepted"]
    assert decisions[0].body["hash"] == branch.sim.entries[2].hash
    assert await status_of(client, code) == 4
    again = await client.post(
        "/admin/review/quarantine/CN01/1/3", data={"csrf": csrf, "decision": "rejected", "note": "đổi ý"}
    )
    assert again.status == 404
    assert len([e for e in await mailbox(client, "hub.CN01") if e.kind == "hub.quarantine_decision"]) == 1


async def test_rejecting_a_body_invalid_entry_records_the_decision(client: TestClient) -> None:
    branch = await Branch.enroll(client)
    code = branch.receive()
    branch.sim.append("dossier.stopped", {"dossier": code, "actor": "clerk1"})
    assert (await branch.push())["quarantined"] == [3]
    csrf = await _admin(client)
    empty = await client.post(
        "/admin/review/quarantine/CN01/1/3", data={"csrf": csrf, "decision": "rejected"}
    )
    assert empty.status == 400  # a reason is required
    resp = await client.post(
        "/admin/review/quarantine/CN01/1/3",
        data={"csrf": csrf, "decision": "rejected", "note": "thiếu lý do"},
    )
    assert resp.status == 200
    row = await hub_of(client).store.fetchone("SELECT decision FROM quarantine WHERE seq = 3")
    assert row == ("rejected",)
    assert "quarantine" not in (await table(client))["CN01"][1]


async def test_resolving_a_conflict_writes_a_signed_event_routed_to_the_involved_nodes(
    client: TestClient,
) -> None:
    branch = await Branch.enroll(client)
    code = branch.receive(pickup="CN02")
    branch.sim.append(
        "dossier.returned",
        {
            "dossier": code,
            "actor": "clerk1",
            "recipient": {"name": "Nguyễn Văn An"},
            "proxy": False,
            "channel": 1,
        },
    )
    await branch.push()
    await settle(client)
    csrf = await _admin(client)
    page = await (await client.get("/admin/review")).text()
    conflicting = branch.sim.entries[2].hash
    assert conflicting in page and branch.sim.entries[1].hash in page  # both events, side by side
    resp = await client.post(
        f"/admin/review/conflicts/{code}/{conflicting}",
        data={"csrf": csrf, "decision": "dismiss", "note": "Trả nhầm hồ sơ, bỏ qua", "state": ""},
    )
    assert resp.status == 200 and "Không có xung đột đang mở" in await resp.text()
    resolved = [e for e in await mailbox(client, "hub.CN01") if e.kind == "dossier.conflict_resolved"]
    assert len(resolved) == 1 and resolved[0].body["conflict"] == conflicting
    assert resolved[0].body["actor"] == "admin:admin1"
    forwards = await mailbox(client, "hub.CN02")
    # CN01's reception and return were relayed to the pickup branch on ingest (central.relay), then the
    # resolution is forwarded.
    assert [e.kind for e in forwards] == ["log.genesis", "hub.forward", "hub.forward", "hub.forward"]
    assert [f.body["entry"]["seq"] for f in forwards[1:3]] == [2, 3]
    assert forwards[3].body["entry"]["sig"] == resolved[0].to_dict()["sig"]
    row = await hub_of(client).store.fetchone("SELECT conflicts FROM dossiers WHERE code = ?", (code,))
    assert row == (0,)


async def test_releasing_a_forked_node_needs_confirmation_and_clears_its_alarms(client: TestClient) -> None:
    branch = await Branch.enroll(client)
    branch.sim.notes(3)
    await branch.push()
    assert (await branch.sim.push([forked(branch, 3)]))[0] == 409
    csrf = await _admin(client)
    assert (await table(client))["CN01"][0] == 4
    assert (await client.get("/admin/nodes/CN01/release")).status == 200
    wrong = await client.post(
        "/admin/nodes/CN01/release", data={"csrf": csrf, "confirm": "CN02", "reason": "ok"}
    )
    assert wrong.status == 400
    resp = await client.post(
        "/admin/nodes/CN01/release",
        data={"csrf": csrf, "confirm": "CN01", "reason": "Khôi phục từ bản sao lưu cũ, đã kiểm tra"},
    )
    assert resp.status == 200
    assert (await hub_of(client).registry.node("CN01")).status == "active"  # type: ignore[union-attr]
    assert [e.kind for e in await mailbox(client, "hub.CN01")][-1] == "hub.node_released"
    severity, codes, _ = (await table(client))["CN01"]
    assert "fork" not in codes and "node_quarantined" not in codes
    branch.sim.entries = branch.sim.entries[:4]
    branch.sim.notes(1)
    assert (await branch.sim.push(branch.sim.entries[-1:]))[0] == 200  # pushes accepted again
