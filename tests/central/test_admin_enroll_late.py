"""Enrollment (invite shown once with a QR code, revocation behind a confirmation, key epochs) and the
late-dossier control (overdue and due soon, 766 ratios, satisfaction, apology slip)."""

from __future__ import annotations

import html
import re

import pytest
from aiohttp.test_utils import TestClient

from protocol import InviteToken, fingerprint
from protocol.dossier import rating_body
from tests.central.helpers import SimNode, hub_clock, hub_of
from tests.central.test_admin_review import mailbox
from tests.central.webhelpers import LOOKUP, Branch, add_user, csrf_of, login, settle

HOUR = 3_600_000


async def _admin(client: TestClient) -> str:
    await add_user(client, "admin1", "admin")
    assert (await login(client, "admin1")).status == 303
    return await csrf_of(client, "/admin/nodes")


async def test_invite_is_shown_once_with_a_qr_code_and_enrolls_the_node(client: TestClient) -> None:
    csrf = await _admin(client)
    resp = await client.post(
        "/admin/nodes/invite", data={"csrf": csrf, "node": "van03", "kind": "van", "name": "Xe lưu động 03"}
    )
    assert resp.status == 200 and resp.headers["Cache-Control"] == "no-store"
    page = await resp.text()
    token_text = html.unescape(re.search(r'id="invite-token">([^<]+)<', page).group(1))  # type: ignore[union-attr]
    assert "<svg" in page.split('id="invite-qr"')[1] and 'class="segno"' in page
    token = InviteToken.parse(token_text)
    assert token.node == "VAN03" and token.fp == fingerprint(hub_of(client).public_key.text)
    listing = await (await client.get("/admin/nodes")).text()
    assert token_text not in listing and "VAN03" in listing  # never shown again
    stored = await hub_of(client).store.fetchall("SELECT secret_sha256 FROM invites")
    assert token.secret_sha256 in [r[0] for r in stored] and token_text not in str(stored)
    sim = SimNode(client, "VAN03")
    answer = await sim.enroll_with(token)
    assert answer["epoch"] == 1
    keys = await (await client.get("/admin/nodes")).text()
    assert "đang dùng" in keys and (await hub_of(client).registry.node("VAN03")).status == "active"  # type: ignore[union-attr]


async def test_bad_invites_are_refused(client: TestClient) -> None:
    csrf = await _admin(client)
    for data in ({"node": "../x", "kind": "van", "name": "X"}, {"node": "VAN1", "kind": "car", "name": "X"}):
        resp = await client.post("/admin/nodes/invite", data={"csrf": csrf, **data})
        assert resp.status == 400
    assert await hub_of(client).registry.nodes() == []


async def test_revocation_needs_confirmation_then_refuses_the_key_and_announces_it(
    client: TestClient,
) -> None:
    branch = await Branch.enroll(client)
    branch.sim.notes(4)
    await branch.push()
    csrf = await _admin(client)
    page = await (await client.get("/admin/nodes/CN01/revoke")).text()
    assert "giữ đến số <strong>5</strong>" in page
    data = {"csrf": csrf, "reason": "Máy tính xách tay bị mất", "after": "3", "confirm": "cn01"}
    assert (await client.post("/admin/nodes/CN01/revoke", data=data)).status == 400
    assert (await hub_of(client).registry.node("CN01")).status == "active"  # type: ignore[union-attr]
    data["confirm"] = "CN01"
    resp = await client.post("/admin/nodes/CN01/revoke", data=data)
    assert resp.status == 200 and "thu hồi sau số 3" in await resp.text()
    announced = [e for e in await mailbox(client, "hub") if e.kind == "hub.revocation"]
    assert [e.body for e in announced] == [
        {"node": "CN01", "epoch": 1, "after_seq": 3, "reason": "Máy tính xách tay bị mất"}
    ]
    held = await hub_of(client).store.fetchall(
        "SELECT seq, code FROM quarantine WHERE log = 'CN01' ORDER BY seq"
    )
    assert held == [(4, "revoked"), (5, "revoked")]
    branch.sim.notes(1)
    status, body = await branch.sim.push(branch.sim.entries[-1:])
    assert (status, body["error"]) == (403, "node_revoked")


async def _dossiers(client: TestClient) -> dict[str, str]:
    """CN01: one returned on time, one late, one overdue and open, one due soon; CN02: one early."""
    cn01 = await Branch.enroll(client, "CN01")
    cn02 = await Branch.enroll(client, "CN02")
    now = hub_clock.now
    cn01.sim.time = cn02.sim.time = now - 4 * 24 * HOUR  # the logs start before the dossiers
    codes = {}
    # received 3 days ago (Dec 29, 2025), due 2 days ago; result ready after the due date: late
    at = now - 3 * 24 * HOUR
    codes["late"] = cn01.receive(received_at=at, due_at=at + 24 * HOUR)
    cn01.sim.time = at + 2 * 24 * HOUR
    for kind, extra in (
        ("dossier.transferred", {"agency": "UBND"}),
        ("dossier.result_ready", {"outcome": "approved"}),
    ):
        cn01.sim.append(kind, {"dossier": codes["late"], "actor": "o1", **extra})
    codes["overdue"] = cn01.receive(received_at=at + HOUR, due_at=at + 2 * HOUR)
    codes["soon"] = cn01.receive(received_at=now - HOUR, due_at=now + 24 * HOUR, pickup="CN02")
    codes["disliked"] = cn01.receive(received_at=now - 2 * HOUR, due_at=now + 48 * HOUR)
    cn01.sim.append("dossier.transferred", {"dossier": codes["disliked"], "actor": "o1", "agency": "UBND"})
    cn01.sim.append(
        "dossier.result_ready", {"dossier": codes["disliked"], "actor": "o1", "outcome": "approved"}
    )
    cn01.sim.append(
        "dossier.rating",
        rating_body(
            dossier=codes["disliked"], actor="kiosk:1", scale="three_level", value=1, channel="kiosk"
        ),
    )
    codes["early"] = cn02.receive(received_at=now - 50 * HOUR, due_at=now + 48 * HOUR)
    cn02.sim.append("dossier.transferred", {"dossier": codes["early"], "actor": "o1", "agency": "UBND"})
    cn02.sim.append("dossier.result_ready", {"dossier": codes["early"], "actor": "o1", "outcome": "approved"})
    await cn01.push()
    await cn02.push()
    await settle(client)
    return codes


async def test_late_control_lists_ratios_and_satisfaction(client: TestClient) -> None:
    codes = await _dossiers(client)
    await add_user(client, "viewer1", "viewer")
    await login(client, "viewer1")
    page = await (await client.get("/admin/late")).text()
    overdue = page.split('id="overdue"')[1].split("</table>")[0]
    soon = page.split('id="soon"')[1].split("</table>")[0]
    assert codes["overdue"] in overdue and codes["soon"] not in overdue and codes["late"] not in overdue
    assert codes["soon"] in soon and codes["disliked"] not in soon
    assert "Gửi thư xin lỗi" not in page  # viewers do not act
    ratios = page.split('id="ratios"')[1].split("</table>")[0]
    cn01 = ratios.split('data-branch="CN01"')[1].split("</tr>")[0]
    cn02 = ratios.split('data-branch="CN02"')[1].split("</tr>")[0]
    # CN01 counted: late (finished late), overdue (open, past due), disliked (finished early) -> 3
    # late rate 2/3, dislike rate 1/3: satisfaction 100 - 66.7 - 33.3 = 0%; on-time share 1/3
    assert "0,0%" in cn01 and "33,3%" in cn01 and "Chưa đạt" in cn01
    assert "100,0%" in cn02 and "Đạt" in cn02


async def test_apology_is_a_signed_entry_routed_to_the_branches(client: TestClient) -> None:
    codes = await _dossiers(client)
    csrf = await _admin(client)
    data = {
        "csrf": csrf,
        "new_due": "2026-01-09",
        "reason": "Chờ xác minh của cơ quan liên quan",
        "approved_by": "",
    }
    assert (await client.post(f"/admin/late/{codes['late']}/apology", data=data)).status == 404  # finished
    assert (
        await client.post(f"/admin/late/{codes['soon']}/apology", data={**data, "new_due": "2025-12-01"})
    ).status == 400
    resp = await client.post(f"/admin/late/{codes['soon']}/apology", data=data)
    assert resp.status == 200 and "Đã gửi thư xin lỗi" in await resp.text()
    sent = [e for e in await mailbox(client, "hub.CN01") if e.kind == "dossier.apology"]
    assert (
        len(sent) == 1
        and sent[0].body["reason"] == data["reason"]
        and sent[0].body["actor"] == "admin:admin1"
    )
    assert [e.kind for e in await mailbox(client, "hub.CN02")][-1] == "hub.forward"  # the pickup branch
    view = await (await client.get(f"/api/v1/track/{codes['soon']}?k={LOOKUP}")).json()
    assert view["promised_at"] == sent[0].body["new_due_at"] and view["due_at"] != view["promised_at"]


@pytest.mark.parametrize(
    "name, masked", [("Nguyễn Văn An", "N. V. A."), ("Lê thị   Ánh", "L. T. Á."), ("", "")]
)
def test_names_are_masked_to_initials(name: str, masked: str) -> None:
    from central.dossier_index import mask_name

    assert mask_name(name) == masked
