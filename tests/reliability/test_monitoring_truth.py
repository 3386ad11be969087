"""M1: the hub dashboard tells the truth about a real node process (sync every second).

A real hub process and a real ``motcua-node serve`` (state on a small tmpfs, so its free space is real):
each condition is caused for real, the dashboard (``/admin/table``, through a viewer's login) is polled
every 0.2 s, and for each one we measure the time until the node's row shows it (bound: 2 sync
intervals, plus the online window for a silent node) and count the samples after that which show the
node healthy while the condition lasts (must be 0).

Conditions here: low disk (a ballast file below the hub's ``disk_warn_bytes``), recovery from it (the
flag clears), node silent (SIGKILL; ``offline`` after the online window), key revoked (through the
admin's revoke page). Clock skew on real processes: ``test_clock_skew.py``. Quarantine, printer and
scanner faults, lag and integrity refusals: ``tests/central/test_admin_dashboard.py`` (simulated node,
real hub app, one test per condition).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.reliability.faultfs import tmpfs
from tests.reliability.fleet import HubProc, NodeProc
from tests.reliability.test_long_offline import _fill

INTERVAL = 1.0  # the node's sync_interval_seconds
ONLINE_WINDOW = 2  # the hub's online_window_s


async def _watch(
    hub: HubProc,
    node: str,
    shown: Callable[[int, set[str]], bool],
    *,
    bound: float,
    hold: float,
    fault: bool = True,
) -> dict[str, Any]:
    """Poll until ``shown`` (bounded by ``bound`` seconds), then for ``hold`` seconds more: every sample
    must still show it and, while a ``fault`` lasts, none may show the node healthy."""
    started = time.monotonic()
    detected = None
    samples = healthy = missed = 0
    while time.monotonic() - started < bound + hold:
        severity, codes, _ = (await hub.dashboard())[node]
        if detected is None:
            if shown(severity, codes):
                detected = time.monotonic() - started
                hold_until = time.monotonic() + hold
        else:
            samples += 1
            healthy += severity == 0
            missed += not shown(severity, codes)
            if time.monotonic() > hold_until:
                break
        if detected is None and time.monotonic() - started > bound:
            raise AssertionError(f"{node}: not shown within {bound} s: {severity} {codes}")
        await asyncio.sleep(0.2)
    assert detected is not None
    assert missed == 0 and (healthy == 0 or not fault), (healthy, missed, samples)
    if not fault:
        return {"shown_after_s": round(detected, 2), "samples_after": samples}
    return {"shown_after_s": round(detected, 2), "samples_after": samples, "false_healthy": healthy}


async def test_dashboard_follows_real_faults(tmp_path: Path, figures) -> None:  # type: ignore[no-untyped-def]
    hub = HubProc(tmp_path, online_window_s=ONLINE_WINDOW, disk_warn_bytes=12 << 20)
    await hub.create()
    await hub.start()
    result: dict[str, Any] = {}
    with tmpfs(tmp_path / "disk", "24m") as disk:
        node = NodeProc(disk, "CN05", 5)
        node.log = tmp_path / "CN05.log"
        try:
            await node.create(await hub.invite("CN05"), sync_interval_seconds=int(INTERVAL), low_disk_mb=2)
            await node.start()
            status, body = await node.receive()
            assert status == 201, body
            bound = 2 * INTERVAL + 0.5  # two sync intervals (+ one dashboard poll)
            result["healthy"] = await _watch(hub, "CN05", lambda s, c: s == 0, bound=30, hold=1, fault=False)

            ballast = disk / "ballast.bin"
            _fill(ballast, 8 << 20)  # 8 MiB free: under the hub's 12 MiB warning
            result["disk_low"] = await _watch(
                hub, "CN05", lambda s, c: "disk_low" in c and s >= 2, bound=bound, hold=2 * INTERVAL
            )
            ballast.unlink()
            result["disk_recovered"] = await _watch(
                hub, "CN05", lambda s, c: "disk_low" not in c, bound=bound, hold=0.5, fault=False
            )

            node.proc.kill()  # type: ignore[union-attr]
            node.proc = None
            result["silent"] = await _watch(
                hub, "CN05", lambda s, c: "offline" in c and s >= 3, bound=ONLINE_WINDOW + bound, hold=1
            )
            await node.start()
            result["back_online"] = await _watch(
                hub, "CN05", lambda s, c: "offline" not in c, bound=30, hold=0.5, fault=False
            )

            await hub.revoke("CN05", "máy bị mất (kiểm thử)")
            result["revoked"] = await _watch(hub, "CN05", lambda s, c: "revoked" in c, bound=bound, hold=1)

            async def blocked() -> bool:
                return (await node.status())["sync"]["append_block"] == "node_revoked"

            started = time.monotonic()
            while not await blocked():
                assert time.monotonic() - started < bound, "the node did not learn it was revoked"
                await asyncio.sleep(0.2)
            result["node_blocked_after_s"] = round(time.monotonic() - started, 2)
            figures("M1 monitoring truthfulness (real hub + node, sync every 1 s)", **result)
        finally:
            node.stop()
            hub.stop()
