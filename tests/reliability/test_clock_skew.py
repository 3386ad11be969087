"""S9: node clocks far off (libfaketime on real ``motcua-node serve`` processes: -2 years, +10 years).

What must hold: the hub takes the nodes' entries and orders them by seq, never by time (each log on the
hub is 1..n contiguous, hub head = node head, entry times left as the node wrote them); the signed
requests still authenticate, because the client signs with hub-relative time (the hub's ``stale``
refusal and every hello carry the hub's time: HTTP ``Date`` / Kerberos skew handling) instead of
looping on 401s; and the skew is named, not silent: on the node (``/api/v1/status`` ``sync.clock_skew``,
a ``/readyz`` warning, the staff banner in Vietnamese, a log line) and on the hub dashboard (the node's
row flagged ``time_uncertain``, "Đồng hồ không tin cậy (lệch giờ)").
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from tests.reliability.fleet import HubProc, NodeProc, faketime_available, until
from tests.tools import require

DAY_MS = 86_400_000


async def _receive_now(node: NodeProc, n: int) -> list[str]:
    """``n`` dossiers received with the right clock (in this process, before the node serves)."""
    from node.config import load as load_node_config
    from node.provision import Node
    from tests.e2e.realnode import FAST_LOOKUP, reception

    opened = await Node.open(load_node_config(node.data, {}), lookup_iterations=FAST_LOOKUP)
    try:
        return [(await opened.desk.receive(reception(), actor="an.nv")).code for _ in range(n)]
    finally:
        await opened.close()


@pytest.fixture
def faketime() -> None:
    if not faketime_available():
        require("faketime")


async def test_skewed_node_clocks_sync_and_are_named(tmp_path: Path, faketime: None, figures) -> None:  # type: ignore[no-untyped-def]
    hub = HubProc(tmp_path, skew_warn_s=120)
    await hub.create()
    await hub.start()
    behind, ahead = NodeProc(tmp_path, "CN01", 1), NodeProc(tmp_path, "CN02", 2)
    nodes = {"-730d": behind, "+3650d": ahead}
    result: dict[str, object] = {}
    try:
        codes: dict[str, list[str]] = {}
        for shift, node in nodes.items():
            await node.create(await hub.invite(node.node_id))
            # dossiers taken while the clock was right; then the clock jumps (CN01: back 2 years, a dead
            # CMOS battery; CN02: 10 years ahead) and staff go on recording events on them
            codes[shift] = await _receive_now(node, 3)
            await node.start(fake=shift)
        for shift, node in nodes.items():
            for code in codes[shift]:
                status, body = await node.call(
                    "POST", f"/api/v1/dossiers/{code}/events", {"action": "withdrawal_request"}
                )
                assert status == 201, body
        # a new dossier needs the procedure in force and the working calendar on the node's "today":
        # 2 years back no procedure is in force yet, 10 years ahead the calendar has no data; both
        # refusals name the node's date and the clock
        status, body = await behind.receive()
        assert status == 422 and "theo đồng hồ máy trạm" in body["fields"]["procedure"], body
        status, body = await ahead.receive()
        assert status == 500 and "Theo đồng hồ máy trạm hôm nay là" in body["message"], body
        started = time.monotonic()
        for shift, node in nodes.items():

            async def synced(node: NodeProc = node) -> bool:
                status = await node.status()
                return hub.head(node.node_id) == status["head"]["seq"] and status["unsent"] == 0

            await until(synced, timeout=60, what=f"{node.node_id} ({shift}) synced")
        result["sync_s"] = round(time.monotonic() - started, 2)
        now = time.time_ns() // 1_000_000
        db = sqlite3.connect(f"file:{hub.dir / 'hub.sqlite3'}?mode=ro", uri=True)
        try:
            for shift, node in nodes.items():
                days = int(shift[:-1])
                rows = db.execute(
                    "SELECT seq, time_ms, time_n FROM entries WHERE log = ? ORDER BY seq", (node.node_id,)
                ).fetchall()
                assert [r[0] for r in rows] == list(range(1, len(rows) + 1))  # by seq, contiguous
                stamps = [(r[1], r[2]) for r in rows]
                assert stamps == sorted(stamps)  # the HLC never goes back, even when the wall clock does
                if days > 0:  # entries keep the node's own clock: the hub neither re-stamps nor refuses them
                    assert abs(stamps[-1][0] - (now + days * DAY_MS)) < DAY_MS, stamps
                else:  # the clock fell back: entries carry the last stamp (HLC), not 2 years ago
                    assert abs(stamps[-1][0] - now) < DAY_MS, stamps
                assert len(rows) >= 7  # genesis, 3 receptions (and their events), 3 withdrawal requests
                status = await node.status()
                offset = status["sync"]["clock_offset_ms"]
                assert abs(offset + days * DAY_MS) < 3_600_000, offset  # hub minus node
                message = status["sync"]["clock_skew"]
                way = "chậm" if days < 0 else "nhanh"
                assert message and f"Đồng hồ máy trạm {way} {abs(days)} ngày" in message, message
                code, ready = await node.readyz()
                assert code == 200 and "clock_skew_warning" in ready["checks"], ready
                assert f"Đồng hồ máy trạm {way}" in await node.page("/hom-nay")
                assert "clock skew" in node.log.read_text(errors="replace")
                result[f"{node.node_id}_{shift}"] = {
                    "entries": len(rows),
                    "offset_days": round(offset / DAY_MS, 2),
                }
        finally:
            db.close()

        async def flagged() -> bool:
            rows = await hub.dashboard()
            return all("time_uncertain" in rows[n.node_id][1] for n in nodes.values())

        result["dashboard_flag_s"] = round(await until(flagged, timeout=10, what="time_uncertain"), 2)
        rows = await hub.dashboard()
        for node in nodes.values():
            severity, problems, html = rows[node.node_id]
            assert severity >= 2 and "Đồng hồ không tin cậy" in html, (problems, html)
            assert "refused_integrity" not in problems, problems
        # one refused request per process start (its first hello, signed with the raw clock), then none
        result["hub_401_stale"] = hub.log.read_text(errors="replace").count(" 401")
        assert result["hub_401_stale"] <= 4, result  # two skewed starts; never a loop of 401s
        figures("S9 clock skew (-2 y, +10 y)", **result)
    finally:
        for node in nodes.values():
            node.stop()
        hub.stop()


def test_the_skew_message_names_direction_and_size() -> None:
    from node.sync_service import CLOCK_SKEW_WARN_MS, clock_skew_message

    assert "chậm 730 ngày" in clock_skew_message(730 * DAY_MS - 5000)  # hub minus node > 0: behind
    assert "nhanh 3650 ngày" in clock_skew_message(-3650 * DAY_MS)
    assert "nhanh 5 giờ" in clock_skew_message(-5 * 3_600_000)
    assert "chậm 3 phút" in clock_skew_message(3 * 60_000)
    assert CLOCK_SKEW_WARN_MS == 120_000  # the hub's skew_warn_s default
