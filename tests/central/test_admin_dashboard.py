"""The sync-health dashboard tells the truth (RELIABILITY.md M1): each injected condition shows on the
next refresh of the table, with the right severity, and a node with a fault is never shown healthy."""

from __future__ import annotations

import re

import pytest
from aiohttp.test_utils import TestClient

from central.nodehealth import NodeFacts, Refusal, Thresholds, assess
from tests.central.helpers import hub_clock, hub_of
from tests.central.webhelpers import Branch, add_user, forked, login, settle, table

MINUTE = 60_000


@pytest.fixture
async def admin(client: TestClient) -> TestClient:
    await add_user(client, "viewer1", "viewer")
    assert (await login(client, "viewer1")).status == 303
    return client


async def _healthy(client: TestClient, node: str = "CN01", kind: str = "branch") -> Branch:
    branch = await Branch.enroll(client, node, kind)
    branch.receive()
    await branch.push()
    await branch.heartbeat()
    return branch


async def test_a_node_goes_from_healthy_to_offline_to_alarm(
    admin: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    branch = await _healthy(admin)
    rows = await table(admin)
    severity, codes, html = rows["CN01"]
    assert (severity, codes) == (0, set()) and "Trực tuyến" in html
    start = hub_clock.now
    monkeypatch.setattr(hub_clock, "now", start + 2 * MINUTE)  # inside the 3-minute window
    assert (await table(admin))["CN01"][0] == 0
    monkeypatch.setattr(hub_clock, "now", start + 4 * MINUTE)  # silent for longer than the window
    severity, codes, html = (await table(admin))["CN01"]
    assert (severity, codes) == (3, {"offline"}) and "Ngoại tuyến" in html
    status, body = await branch.sim.push([forked(branch, 2)])  # back, with another history
    assert (status, body["error"]) == (409, "fork")
    severity, codes, _ = (await table(admin))["CN01"]
    assert severity == 4 and {"fork", "node_quarantined", "refused_integrity"} <= codes


@pytest.mark.parametrize(
    "fault, code, level",
    [
        ("low_disk", "disk_low", 2),
        ("printer", "printer_fault", 2),
        ("scanner", "scanner_fault", 2),
        ("skew", "time_uncertain", 2),
        ("lag", "lag", 2),
        ("last_error", "last_error", 2),
        ("quarantine", "quarantine", 4),
        ("revoked", "revoked", 4),
        ("bad_signature", "refused_integrity", 4),
        ("silent", "offline", 3),
    ],
)
async def test_each_fault_shows_on_the_next_refresh(
    admin: TestClient, monkeypatch: pytest.MonkeyPatch, fault: str, code: str, level: int
) -> None:
    branch = await _healthy(admin)
    await _healthy(admin, "CN02")
    hub = hub_of(admin)
    now = hub_clock.now
    if fault == "low_disk":
        await branch.heartbeat(disk_free_bytes=300 * 1024**2)
    elif fault == "printer":
        await branch.heartbeat(printers=({"name": "quay-1", "state": "paper_jam"},))
    elif fault == "scanner":
        await branch.heartbeat(scanners=({"name": "may-quet-1", "state": "offline"},))
    elif fault == "skew":
        await branch.heartbeat(clock_ms=now - 10 * MINUTE)
    elif fault == "lag":
        await branch.heartbeat(unacked_entries=40, unacked_bytes=9000, oldest_unacked_ms=now - 90 * MINUTE)
    elif fault == "last_error":
        await branch.heartbeat(last_error="connection reset by peer")
    elif fault == "quarantine":
        code_ = branch.receive()
        branch.sim.append("dossier.stopped", {"dossier": code_, "actor": "clerk1"})  # no reason: invalid
        result = await branch.push()
        assert len(result["quarantined"]) == 1
    elif fault == "revoked":
        branch.sim.notes(2)
        await branch.push()
        await hub.registry.revoke("CN01", after=2, reason="laptop stolen", now=now)
    elif fault == "bad_signature":
        raw = bytearray(branch.sim.append("test.note", {"n": 1}).raw)
        raw[raw.index(b'"sig":"') + 10] ^= 1
        status, _ = await branch.sim.push(raw=bytes(raw) + b"\n")
        assert status == 422
    else:
        monkeypatch.setattr(hub_clock, "now", now + 10 * MINUTE)
        await _healthy(admin, "CN03")  # another node keeps talking
    rows = await table(admin)
    severity, codes, _ = rows["CN01"]
    assert code in codes and severity == level, (codes, severity)
    assert rows["CN02"][0] in (0, 3) and code not in rows["CN02"][1] or fault == "silent"
    order = list(rows)
    assert order[0] == "CN01"  # most severe first


async def test_filter_by_kind_and_columns(admin: TestClient) -> None:
    branch = await _healthy(admin, "CN01", "branch")
    await _healthy(admin, "VAN03", "van")
    await branch.heartbeat(
        unacked_entries=7, unacked_bytes=5000, oldest_unacked_ms=hub_clock.now - 5 * MINUTE
    )
    rows = await table(admin, "?kind=van")
    assert list(rows) == ["VAN03"]
    html = (await table(admin))["CN01"][2]
    for text in ("Chi nhánh", "0.1.0", "50,0 GB", "quay-1: ok", "5 phút", ">7<", "số 2"):
        assert text in html, text
    page = await (await admin.get("/admin?kind=van")).text()
    assert 'hx-get="/admin/table?kind=van"' in page and 'hx-trigger="every 5s"' in page
    assert '<script src="/static/vendor/htmx-2.0.11.min.js"' in page


async def test_node_page_shows_history_charts_events_and_fork_evidence(
    admin: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    branch = await _healthy(admin)
    for i in range(6):
        monkeypatch.setattr(hub_clock, "now", hub_clock.now + MINUTE)
        await branch.heartbeat(unacked_entries=i, oldest_unacked_ms=hub_clock.now - i * MINUTE)
    other = forked(branch, 2)
    assert (await branch.sim.push([other]))[0] == 409
    await settle(admin)
    html = await (await admin.get("/admin/nodes/CN01")).text()
    assert html.count("<svg") == 3 and "polyline" in html and "<rect" in html
    assert branch.sim.entries[1].hash in html and other.hash in html  # both entries, side by side
    assert "another history" in html and "Bằng chứng rẽ nhánh" in html
    assert "Nhận bản ghi" in html and "Từ chối yêu cầu" in html and "push: fork" in html
    assert re.search(r"Ghi danh</td><td>kỷ nguyên 1", html)


def test_assess_is_pure_and_orders_problems() -> None:
    limits = Thresholds(
        online_window_ms=180_000, skew_warn_ms=120_000, lag_warn_ms=3_600_000, disk_warn_bytes=10
    )
    facts = NodeFacts(
        node="CN01",
        kind="branch",
        name="CN",
        status="active",
        reason="",
        epoch=1,
        created_ms=0,
        contacts=(1_000_000, 950_000, 900_000, 100_000),
        last_contact_ms=1_000_000,
        beat=None,
        skew_ms=200_000,
        held_seq=3,
        last_receipt=None,
        scan_bytes_pending=0,
        quarantined_pending=0,
        forks=0,
        alarms=(),
        refusals=(Refusal(990_000, "push", "rate_limited"),),
    )
    h = assess(facts, 1_010_000, limits)
    assert h.online and h.since_ms == 900_000  # the run since the last gap longer than the window
    assert [p.code for p in h.problems] == ["refused", "time_uncertain"] and h.severity == 2
    late = assess(facts, 1_000_000 + 180_001, limits)
    assert not late.online and late.since_ms == 1_000_000 and late.severity == 3
