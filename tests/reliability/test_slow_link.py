"""N4: a van on slow, flaky LTE. A real node process holding scans (real JPEGs and PDFs) syncs to a real
hub process through the fault proxy with a bandwidth limit, a slicer (small random segments with small
delays) and random link resets.

What must hold: every scan reaches the hub whole; an upload interrupted by a reset resumes at the chunk
it was on (never from byte 0 of the scan): the bytes a reset throws away are at most one chunk, and no
chunk is accepted by the hub more often than once plus the number of resets; meanwhile the staff UI,
served by the same process, stays responsive (p99 of a bounded number of GETs of staff pages and the
JSON API < 500 ms).

CI runs a few MiB at 2 MiB/s with resets likely enough to happen (seeded: they do). The full runs
(``-m slow``) are 50 MiB at 96 KiB/s (about 9 minutes: 50 MiB at 8 kB/s would take 1.8 hours) with 1%
resets per 64 KiB, and one 1.5 MiB scan at a true 8 kB/s (the rate that used to time out every chunk).
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import random
import re
import sqlite3
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from fpdf import FPDF
from PIL import Image

from protocol import manifest_for_bytes
from protocol.blobs import CHUNK_SIZE
from tests.faults.proxy import FaultProxy, Faults
from tests.reliability.fleet import HubProc, NodeProc
from tests.reliability.procs import ROOT

PUT_RE = re.compile(r"PUT /v1/sync/blobs/([0-9a-f]{64})/(\d+) 200")


def noise_jpeg(target: int, rng: random.Random) -> bytes:
    """A photo-like JPEG (noise compresses badly, like a colour scan) of roughly ``target`` bytes."""
    side = max(64, int((target / 0.9) ** 0.5))  # ~0.9 bytes per noisy pixel at quality 90
    im = Image.frombytes("RGB", (side, side), rng.randbytes(side * side * 3))
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=90)
    return buf.getvalue()


def scan_pdf(target: int, rng: random.Random) -> bytes:
    """A PDF of scanned pages (one JPEG per page), as a scanner's "scan to PDF" makes."""
    pdf = FPDF()
    pages = max(1, target // 700_000)
    for i in range(pages):
        pdf.add_page()
        pdf.image(io.BytesIO(noise_jpeg(target // pages, rng)), x=10, y=10, w=180)
        pdf.set_font("helvetica", size=10)
        pdf.cell(0, 10, f"trang {i + 1}")
    return bytes(pdf.output())


async def _hold_scans(node: NodeProc, total: int, seed: int) -> dict[str, bytes]:
    """Dossiers with scans attached, written into the node before it serves (staged durably in its blob
    store, then registered with a signed ``dossier.attachment`` entry in one transaction: what the
    scanner integration does)."""
    from node.blobs import BlobStore, register_blob
    from node.config import load as load_node_config
    from node.provision import Node
    from tests.e2e.realnode import FAST_LOOKUP, reception

    rng = random.Random(seed)
    opened = await Node.open(load_node_config(node.data, {}), lookup_iterations=FAST_LOOKUP)
    scans: dict[str, bytes] = {}
    try:
        blobs = BlobStore(opened.config.data_dir, low_disk_bytes=0)
        made = 0
        while made < total:
            code = (await opened.desk.receive(reception(), actor="an.nv")).code
            for mime, data in (
                ("image/jpeg", noise_jpeg(min(1_200_000, total - made), rng)),
                ("application/pdf", scan_pdf(min(2_600_000, max(400_000, total - made)), rng)),
            ):
                staged = await asyncio.to_thread(blobs.stage_bytes, data)
                manifest = manifest_for_bytes(data, mime, 1 + data.count(b"/Type /Page"))
                assert manifest.sha256 == staged.sha256
                body = {
                    "dossier": code,
                    "document": "CCCD",
                    "role": "document",
                    "manifest": manifest.to_body(),
                }
                async with opened.store.write() as db:
                    await register_blob(
                        db, staged, media_type=mime, pages=manifest.pages, display_name=f"scan-{made}"
                    )
                    await opened.journal.append(db, "dossier.attachment", body, actor="an.nv")
                scans[manifest.sha256] = data
                made += len(data)
                if made >= total:
                    break
    finally:
        await opened.close()
    return scans


def _complete(hub: HubProc, shas: list[str]) -> int:
    db = sqlite3.connect(f"file:{hub.dir / 'hub.sqlite3'}?mode=ro", uri=True, timeout=10)
    try:
        marks = ",".join("?" * len(shas))
        (n,) = db.execute(
            f"SELECT count(*) FROM blobs WHERE state = 'complete' AND sha256 IN ({marks})", shas
        ).fetchone()
        return int(n)
    finally:
        db.close()


def _staff_load(node: NodeProc, limit: int, pause: float, stop: Path) -> subprocess.Popen[bytes]:
    """Clerks' GETs from a process of their own (``tests.reliability.staff_load``)."""
    argv = [sys.executable, "-m", "tests.reliability.staff_load", node.url, node.api_token, str(limit)]
    return subprocess.Popen([*argv, str(pause), str(stop)], stdout=subprocess.PIPE, cwd=ROOT)


def _p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def slow_link(
    tmp: Path, *, scan_bytes: int, faults: Faults, seed: int, timeout: float, gets: int, pause: float
) -> dict[str, Any]:
    hub = HubProc(tmp)
    await hub.create()
    await hub.start()
    proxy = FaultProxy(hub.port, seed=seed, faults=faults)
    await proxy.start()
    node = NodeProc(tmp, "VAN01", 1)
    try:
        await node.create(await hub.invite("VAN01", hub_url=proxy.url, kind="van"))
        scans = await _hold_scans(node, scan_bytes, seed)
        shas = list(scans)
        chunks = sum(-(-len(d) // CHUNK_SIZE) for d in scans.values())
        stop = tmp / "staff.stop"
        started = time.monotonic()
        await node.start()
        staff = _staff_load(node, gets, pause, stop)
        try:
            while _complete(hub, shas) < len(shas):
                assert time.monotonic() - started < timeout, (
                    f"{_complete(hub, shas)}/{len(shas)} scans whole after {timeout} s"
                )
                await asyncio.sleep(0.5)
            sync_s = time.monotonic() - started
        finally:
            stop.touch()
            out, _ = await asyncio.to_thread(staff.communicate, timeout=60)
        assert staff.returncode == 0, "the staff GETs failed (see above)"
        latencies = json.loads(out)
        for sha, data in scans.items():
            assert (hub.dir / "blobs" / "sha256" / sha[:2] / sha).read_bytes() == data
        accepted: dict[tuple[str, int], int] = {}
        for line in hub.log.read_text(errors="replace").splitlines():
            match = PUT_RE.search(line)
            if match:
                key = (match[1], int(match[2]))
                accepted[key] = accepted.get(key, 0) + 1
        resets = proxy.count("link_reset")
        lost = proxy.lost_bytes
        # resumable: what a reset throws away is the request in flight, at most one chunk (+ headers)
        assert all(n <= CHUNK_SIZE + 4096 for n in lost), lost
        assert len(accepted) == chunks, (len(accepted), chunks)
        assert sum(accepted.values()) <= chunks + resets, (sum(accepted.values()), chunks, resets)
        assert latencies, "no staff GET ran during the sync"
        p99 = _p(latencies, 0.99)
        # the target is 500 ms; on a shared machine running far more than it has cores (other suites,
        # soaks) the answer times measure the queue for a CPU, so only a stall is a failure there
        load = os.getloadavg()[0]
        limit = 0.5 if load <= 2 * (os.cpu_count() or 1) else 2.0
        assert p99 < limit, f"staff GETs p99 {p99 * 1000:.0f} ms during the sync (load {load:.1f})"
        return {
            "scans": len(scans),
            "scan_mib": round(sum(len(d) for d in scans.values()) / 2**20, 2),
            "chunks": chunks,
            "bandwidth_bytes_per_s": faults.bandwidth,
            "link_resets": resets,
            "lost_bytes_per_reset_max": max(lost, default=0),
            "lost_bytes_total": sum(lost),
            "lost_max_over_chunk": round(max(lost, default=0) / CHUNK_SIZE, 3),
            "chunk_puts_accepted": sum(accepted.values()),
            "bytes_up": proxy.bytes_up,
            "bytes_up_over_scans": round(proxy.bytes_up / sum(len(d) for d in scans.values()), 3),
            "sync_s": round(sync_s, 1),
            "effective_bytes_per_s": round(sum(len(d) for d in scans.values()) / sync_s),
            "staff_gets": len(latencies),
            "staff_p50_ms": round(statistics.median(latencies) * 1000, 1),
            "staff_p99_ms": round(p99 * 1000, 1),
            "staff_max_ms": round(max(latencies) * 1000, 1),
            "p99_limit_ms": int(limit * 1000),
            "loadavg_1m": round(load, 1),
        }
    finally:
        node.stop()
        await proxy.stop()
        hub.stop()


def lte(bandwidth: int, reset: float) -> Faults:
    return Faults(bandwidth=bandwidth, slice=(256, 4096), slice_delay_ms=(0.0, 1.0), reset_per_window=reset)


async def test_slow_lte_quick(tmp_path: Path, figures) -> None:  # type: ignore[no-untyped-def]
    result = await slow_link(
        tmp_path, scan_bytes=3_500_000, faults=lte(2 << 20, 0.04), seed=4, timeout=120, gets=400, pause=0.02
    )
    figures("N4 slow LTE (quick: 2 MiB/s)", **result)
    assert result["link_resets"] >= 1  # the seed makes the link drop at least once mid-upload


@pytest.mark.slow
@pytest.mark.timeout(1800)
async def test_slow_lte_50_mib(tmp_path: Path, figures) -> None:  # type: ignore[no-untyped-def]
    result = await slow_link(
        tmp_path, scan_bytes=50 * 2**20, faults=lte(96 * 1024, 0.01), seed=50, timeout=1500, gets=2000,
        pause=0.25,
    )  # fmt: skip
    figures("N4 slow LTE (50 MiB at 96 KiB/s)", **result)


@pytest.mark.slow
@pytest.mark.timeout(1800)
async def test_slow_lte_8_kb_per_s(tmp_path: Path, figures) -> None:  # type: ignore[no-untyped-def]
    result = await slow_link(
        tmp_path, scan_bytes=1_500_000, faults=lte(8000, 0.01), seed=8, timeout=1500, gets=1000, pause=0.25
    )
    figures("N4 slow LTE (1.5 MiB at 8 kB/s)", **result)


def test_put_lines_match_the_hub_access_log() -> None:
    """The checker reads accepted chunk uploads from the hub's JSON access log: keep its shape in sight."""
    line = json.dumps({"message": "PUT /v1/sync/blobs/" + "a" * 64 + "/3 200", "status": 200})
    match = PUT_RE.search(line)
    assert match and match[2] == "3"
