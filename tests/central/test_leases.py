"""P3 on the hub: a signed offline lease with every heartbeat answer, per-node hours set by an admin,
no renewal for a revoked node, and the lease state on the dashboard and the node page."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import TestClient

from central.hub import HUB
from protocol import Lease, ProtocolError
from tests.central.helpers import hub_clock
from tests.central.webhelpers import Branch, add_user, csrf_of, login, table

HOUR = 3_600_000


@pytest.fixture
async def admin(client: TestClient) -> TestClient:
    await add_user(client, "admin1", "admin")
    assert (await login(client, "admin1")).status == 303
    return client


async def test_lease_issue_expiry_per_node_hours_and_revocation(
    admin: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    branch = await Branch.enroll(admin, "VAN03", "van")
    assert "Chưa cấp" in (await table(admin))["VAN03"][2]
    answer = await branch.heartbeat()
    lease = Lease.from_wire(answer["lease"])
    hub = admin.server.app[HUB]
    lease.verify(hub.public_key)  # signed by the hub key
    assert (lease.node, lease.epoch) == ("VAN03", 1)
    assert lease.expires - lease.issued == 72 * HOUR == lease.expires - hub_clock.now
    forged = Lease.from_wire({**lease.to_wire(), "expires": lease.expires + HOUR})
    with pytest.raises(ProtocolError):
        forged.verify(hub.public_key)  # an extended lease is not the hub's
    for bad in ({**lease.to_wire(), "extra": 1}, {**lease.to_wire(), "expires": lease.issued}):
        with pytest.raises(ProtocolError):
            Lease.from_wire(bad)
    html = (await table(admin))["VAN03"][2]
    assert 'data-lease="valid"' in html and "72 giờ" in html

    monkeypatch.setattr(hub_clock, "now", lease.expires + 1)  # the van stayed away past its lease
    assert (await login(admin, "admin1")).status == 303  # 72 h later: a new admin session
    assert 'data-lease="expired"' in (await table(admin))["VAN03"][2]

    csrf = await csrf_of(admin, "/admin/nodes/VAN03")
    bad = await admin.post("/admin/nodes/VAN03/lease", data={"csrf": csrf, "hours": "99999"})
    assert bad.status == 400
    done = await admin.post(
        "/admin/nodes/VAN03/lease", data={"csrf": csrf, "hours": "8"}, allow_redirects=False
    )
    assert done.status == 303
    renewed = Lease.from_wire((await branch.heartbeat(clock_ms=hub_clock.now))["lease"])
    assert renewed.expires - renewed.issued == 8 * HOUR
    page = await (await admin.get("/admin/nodes/VAN03")).text()
    assert 'data-lease="valid"' in page and "8 giờ" in page and "Giấy phép ngoại tuyến" in page

    await hub.registry.revoke("VAN03", after=None, reason="laptop bị mất", now=hub_clock.now)
    status, body = await branch.sim.call("POST", "/v1/sync/heartbeat", b"{}")
    assert (status, body["error"]) == (403, "node_revoked")  # a revoked node cannot renew
    assert 'data-lease="revoked"' in (await table(admin))["VAN03"][2]
    assert "Đã thu hồi" in await (await admin.get("/admin/nodes/VAN03")).text()
