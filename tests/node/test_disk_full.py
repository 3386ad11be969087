"""Disk full during scan intake, on a real small tmpfs (RELIABILITY.md D5)."""

from __future__ import annotations

import asyncio
import io
import os
import random
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from fpdf import FPDF
from PIL import Image

from node.blobs import BlobStore
from node.errors import DiskFull
from node.hotfolder import HotFolder, ScannerConfig
from node.scan_inbox import list_unassigned
from node.scan_intake import Deferred, Registered, ScanIntake, list_rejected
from tests.tools import in_ci, keyring, require

MiB = 1 << 20


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 6 MiB tmpfs for the node's state directory (root only)."""
    require("mount")
    mount_point = tmp_path / "state"
    mount_point.mkdir()
    why = "needs root to mount a tmpfs" if os.geteuid() != 0 else ""
    if not why:
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=6m,mode=0700", "tmpfs", str(mount_point)],
            capture_output=True,
        )
        why = done.stderr.decode(errors="replace").strip() if done.returncode else ""
    if why:
        (pytest.fail if in_ci() else pytest.skip)(f"cannot mount a tmpfs: {why}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def big_pdf(seed: int, mib: float = 1.4) -> bytes:
    """A valid PDF of about ``mib`` MiB: one page holding an incompressible noise image."""
    side = int((mib * MiB / 3) ** 0.5)
    noise = Image.frombytes("RGB", (side, side), random.Random(seed).randbytes(side * side * 3))
    png = io.BytesIO()
    noise.save(png, "PNG", compress_level=0)
    pdf = FPDF()
    pdf.add_page()
    pdf.image(png, x=10, y=10, w=150)
    return bytes(pdf.output())


async def test_enospc_mid_write_leaves_nothing_and_recovers(tmpfs: Path, tmp_path: Path, writer, db) -> None:
    store = BlobStore(tmpfs, keyring=keyring(tmpfs), low_disk_bytes=0)
    intake = ScanIntake(store, writer)
    hot_dir = tmp_path / "hot"
    hot_dir.mkdir()
    filler = tmpfs / "filler.bin"
    filler.write_bytes(b"\0" * (3 * MiB))  # someone else's data on the same disk

    scans = [hot_dir / f"scan-{i}.pdf" for i in range(3)]
    for i, path in enumerate(scans):
        path.write_bytes(big_pdf(i))
    outcomes = [await intake.process(p, scanner="s", desk="d") for p in scans]
    kinds = [type(o).__name__ for o in outcomes]
    assert "Registered" in kinds and "Deferred" in kinds, kinds
    full = next(o for o in outcomes if isinstance(o, Deferred))
    assert full.code == "disk_full" and "đầy" in full.message and not full.incomplete
    # Nothing half-done: no temp files, every file on disk registered, the deferred scan still waiting.
    assert list(store.tmp_dir.iterdir()) == []
    report = await store.sweep(db)
    assert (report.orphans_removed, report.missing) == (0, ())
    waiting = [p for p in scans if p.exists()]
    assert waiting and list_rejected(hot_dir) == []

    # Space returns: the hot folder takes the waiting scans without any manual step.
    filler.unlink()
    hot = HotFolder(
        ScannerConfig("s", hot_dir, "d", debounce=0.05, poll_interval=0.1, retry_delay=0.1), intake
    )
    await hot.start()
    try:
        for _ in range(200):
            if not any(p.exists() for p in scans) and hot.idle():
                break
            await asyncio.sleep(0.05)
    finally:
        await hot.stop()
    assert not any(p.exists() for p in scans)
    assert len(await list_unassigned(db)) == 3
    for scan in await list_unassigned(db):
        assert store.verify(scan.original.sha256)


async def test_low_disk_watermark_refuses_before_enospc(tmpfs: Path, tmp_path: Path, writer, db) -> None:
    store = BlobStore(tmpfs, keyring=keyring(tmpfs), low_disk_bytes=5 * MiB)
    intake = ScanIntake(store, writer)
    path = tmp_path / "scan.pdf"
    path.write_bytes(big_pdf(7, 1.6))
    outcome = await intake.process(path, scanner="s", desk="d")
    assert isinstance(outcome, Deferred) and outcome.code == "disk_full"
    assert "ngưỡng an toàn 5 MB" in outcome.message and path.exists()
    assert list(store.tmp_dir.iterdir()) == [] and await list_unassigned(db) == []
    with pytest.raises(DiskFull):
        store.check_space(path.stat().st_size)

    relaxed = ScanIntake(BlobStore(tmpfs, keyring=keyring(tmpfs), low_disk_bytes=2 * MiB), writer)
    assert isinstance(await relaxed.process(path, scanner="s", desk="d"), Registered)
