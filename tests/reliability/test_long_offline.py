"""N5: a van out of coverage for a week. A real ``motcua-node serve`` process whose wall clock is moved
a day at a time (libfaketime reading its offset from a file: a week passes in seconds), its state
directory on a small tmpfs, the hub behind a partitioned fault proxy.

What must hold: intake goes on every day while the hub is unreachable; the disk rules hold (below the
low-disk watermark ``/readyz`` warns and intake still works, as node/health.py decides; when the disk is
really full intake is refused with 507 ``disk_full`` and a Vietnamese message, nothing half-written, and
it works again as soon as space returns); on reconnection the whole backlog drains: hub head = node head,
the hub's log byte-identical to the node's, every acknowledged dossier on the hub exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import pytest

from tests.faults.proxy import FaultProxy
from tests.reliability.faultfs import tmpfs
from tests.reliability.fleet import HubProc, NodeProc, faketime_available, until
from tests.tools import node_db, require


def _fill(path: Path, leave: int) -> int:
    """Grow ``path`` until at most ``leave`` bytes stay free on its filesystem (ENOSPC stops it early)."""
    import shutil

    written = 0
    with path.open("ab") as f:
        while (free := shutil.disk_usage(path.parent).free) > leave:
            try:
                f.write(b"\0" * min(1 << 20, free - leave))
                f.flush()
            except OSError:
                break
            written += min(1 << 20, free - leave)
    return written


async def _clock_moved(node: NodeProc, days: int) -> None:
    """Wait (bounded) until the node's clock shows ``days`` ahead: its HTTP ``Date`` header (libfaketime
    re-reads the offset file at most once a second)."""
    import aiohttp

    want = (datetime.now(UTC) + timedelta(days=days)).date()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        for _ in range(100):
            async with session.get(node.url + "/healthz") as resp:
                if parsedate_to_datetime(resp.headers["Date"]).date() == want:
                    return  # made from the node's time.time(): the new offset is in force
            await asyncio.sleep(0.1)
    raise AssertionError(f"the node's clock did not move to +{days} days")


def _rows(db_path: Path, log: str, *, hub: bool) -> list[tuple[int, bytes]]:
    uri = f"file:{db_path}?mode=ro"
    opened = sqlite3.connect(uri, uri=True, timeout=10) if hub else node_db(db_path, readonly=True)
    with contextlib.closing(opened) as db:
        return [
            (int(s), bytes(r))
            for s, r in db.execute(
                "SELECT seq, raw FROM entries WHERE log = ? AND epoch = 1 ORDER BY seq", (log,)
            )
        ]


async def long_offline(tmp: Path, *, days: int, per_day: int) -> dict[str, Any]:
    if not faketime_available():
        require("faketime")
    hub = HubProc(tmp)
    await hub.create()
    await hub.start()
    proxy = FaultProxy(hub.port, seed=5)
    await proxy.start()
    clock = tmp / "clock.rc"
    clock.write_text("+0d\n")
    with tmpfs(tmp / "disk", "24m") as disk:
        node = NodeProc(disk, "VAN02", 3)
        node.log = tmp / "VAN02.log"
        try:
            await node.create(await hub.invite("VAN02", hub_url=proxy.url, kind="van"), low_disk_mb=8)
            proxy.partition(10**6)  # out of coverage from here on
            await node.start(fake_file=clock)
            acked: list[str] = []
            intake_s = 0.0
            for day in range(days):
                clock.write_text(f"+{day}d\n")
                await _clock_moved(node, day)
                started = time.monotonic()
                for i in range(per_day):
                    status, body = await node.receive(note=f"ngày {day + 1} hồ sơ {i + 1}")
                    assert status == 201, (day, i, body)
                    acked.append(body["code"])
                intake_s += time.monotonic() - started
            assert len({code.split("-")[1] for code in acked}) == days  # one reception date per simulated day
            status = await node.status()
            assert status["sync"]["online"] is False and status["unsent"] > 0, status["sync"]
            backlog = status["unsent"]
            head = status["head"]["seq"]

            # the disk: below the low-disk watermark a warning only, dossiers still taken
            ballast = disk / "ballast.bin"
            _fill(ballast, 6 << 20)
            code, ready = await node.readyz()
            assert code == 200 and "low_disk_warning" in ready["checks"], ready
            status_code, body = await node.receive(note="dưới ngưỡng cảnh báo")
            assert status_code == 201, body
            acked.append(body["code"])
            # really full: refused with a clear message, nothing half-written, and back when space returns
            _fill(ballast, 0)
            refused: dict[str, Any] | None = None
            for i in range(200):
                status_code, body = await node.receive(note=f"đĩa đầy {i}")
                if status_code == 201:
                    acked.append(body["code"])
                    continue
                assert status_code == 507 and body["error"] == "disk_full", body
                refused = body
                break
            assert refused is not None, "the full disk never refused an intake"
            assert "Ổ đĩa máy trạm đã đầy" in refused["message"], refused
            code, ready = await node.readyz()
            assert code == 503 and "disk_free" in ready["failed"], ready
            ballast.unlink()
            status_code, body = await node.receive(note="đã giải phóng dung lượng")
            assert status_code == 201, body
            acked.append(body["code"])
            status = await node.status()
            assert status["head"]["seq"] > head
            backlog, head = status["unsent"], status["head"]["seq"]
            backlog_bytes = sum(len(r) for _, r in _rows(node.data / "node.sqlite3", "VAN02", hub=False))

            # back in coverage (a week later)
            clock.write_text(f"+{days}d\n")
            await _clock_moved(node, days)
            proxy.heal()
            started = time.monotonic()

            async def drained() -> bool:
                status = await node.status()
                return hub.head("VAN02") == status["head"]["seq"] and status["unsent"] == 0

            drain_s = await until(drained, timeout=300, what="the backlog drained", step=0.1)
            node_rows = _rows(node.data / "node.sqlite3", "VAN02", hub=False)
            hub_rows = _rows(hub.dir / "hub.sqlite3", "VAN02", hub=True)
            assert hub_rows == node_rows  # byte-identical, 1..n, nothing duplicated
            with contextlib.closing(
                sqlite3.connect(f"file:{hub.dir / 'hub.sqlite3'}?mode=ro", uri=True)
            ) as db:
                codes = [
                    r[0]
                    for r in db.execute(
                        "SELECT dossier FROM entries WHERE log = 'VAN02' AND kind = 'dossier.received'"
                    )
                ]
            assert sorted(codes) == sorted(acked) and len(set(codes)) == len(codes)
            return {
                "days_offline": days,
                "dossiers_acked": len(acked),
                "backlog_entries": backlog,
                "backlog_bytes": backlog_bytes,
                "intake_per_s_offline": round(days * per_day / intake_s, 1),
                "disk_full_refusals": 1,
                "drain_s": round(drain_s, 2),
                "drain_entries_per_s": round(backlog / max(drain_s, 1e-3)),
                "hub_head": hub_rows[-1][0],
                "lost": 0,
                "duplicates": 0,
                "started_after_heal_s": round(time.monotonic() - started, 2),
            }
        finally:
            node.stop()
            await proxy.stop()
            hub.stop()


async def test_a_week_offline_quick(tmp_path: Path, figures) -> None:  # type: ignore[no-untyped-def]
    result = await long_offline(tmp_path, days=7, per_day=4)
    figures("N5 long-offline van (quick: 7 days x 4)", **result)


@pytest.mark.slow
@pytest.mark.timeout(3600)
async def test_a_week_offline_busy_van(tmp_path: Path, figures) -> None:  # type: ignore[no-untyped-def]
    result = await long_offline(tmp_path, days=7, per_day=300)
    figures("N5 long-offline van (7 days x 300)", **result)
