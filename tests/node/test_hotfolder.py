"""Hot folder end to end: real files written into a watched folder, each ending in exactly one place."""

from __future__ import annotations

import asyncio
import os
import random
from collections.abc import AsyncIterator
from pathlib import Path

import aiosqlite
import pytest

from node.blobs import BlobStore
from node.errors import ScanNotFound
from node.hotfolder import HotFolder, ScannerConfig
from node.scan_inbox import (
    RegisteredScan,
    add_unassigned,
    attach_unassigned,
    discard_unassigned,
    get_scan,
    list_unassigned,
)
from node.scan_intake import REJECTED_DIR, Duplicate, Registered, ScanIntake, list_rejected
from node.scan_validation import display_name
from tests.node.samples import make_image, make_pdf, make_tiff

FAST = {"debounce": 0.05, "poll_interval": 0.2, "retry_delay": 0.1, "incomplete_retries": 3}


def scanner(folder: Path, **overrides: object) -> ScannerConfig:
    return ScannerConfig(name="may-quet-1", folder=folder, desk="quay-3", **{**FAST, **overrides})  # type: ignore[arg-type]


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    path = tmp_path / "hot"
    path.mkdir()
    return path


@pytest.fixture
def intake(store: BlobStore, writer) -> ScanIntake:
    return ScanIntake(store, writer)


@pytest.fixture
async def hot(folder: Path, intake: ScanIntake) -> AsyncIterator[HotFolder]:
    h = HotFolder(scanner(folder), intake)
    await h.start()
    yield h
    await h.stop()


def pending(folder: Path) -> list[str]:
    return sorted(e.name for e in os.scandir(folder) if e.name != REJECTED_DIR)


async def settle(hot: HotFolder, folder: Path, timeout: float = 20.0) -> None:
    """Wait until the folder holds nothing but rejected/ and the watcher has nothing in flight."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    quiet_since = None
    while loop.time() < deadline:
        if not pending(folder) and hot.idle():
            quiet_since = quiet_since or loop.time()
            if loop.time() - quiet_since > 0.3:
                return
        else:
            quiet_since = None
        await asyncio.sleep(0.05)
    raise AssertionError(f"hot folder did not settle: {pending(folder)} status={hot.status}")


async def scans_by_name(db: aiosqlite.Connection) -> dict[str, RegisteredScan]:
    async with db.execute("SELECT id FROM scans") as cur:
        ids = [row[0] for row in await cur.fetchall()]
    found = [await get_scan(db, i) for i in ids]
    return {s.display_name: s for s in found}


async def assert_each_exactly_once(db, store: BlobStore, folder: Path, names: dict[str, str | None]) -> None:
    """names: scanner file name -> expected rejection code, or None for "registered"."""
    registered = await scans_by_name(db)
    rejected = {r.name: r for r in list_rejected(folder)}
    for raw, code in names.items():
        shown = display_name(raw)
        in_db, in_rejected = shown in registered, shown in rejected
        assert in_db != in_rejected, (
            f"{raw!r}: registered={in_db} rejected={in_rejected} (exactly one expected)"
        )
        if code is None:
            assert in_db, f"{raw!r} was rejected: {rejected[shown]}"
            scan = registered[shown]
            assert store.verify(scan.original.sha256) and store.verify(scan.pdf.sha256)
        else:
            assert in_rejected and rejected[shown].code == code, f"{raw!r}: {rejected.get(shown)}"
            assert rejected[shown].message
    assert pending(folder) == []
    assert list(store.tmp_dir.iterdir()) == []


async def test_mixed_batch_each_file_ends_exactly_once(hot: HotFolder, folder: Path, db, store) -> None:
    secret = folder.parent / "secret.pdf"
    secret.write_bytes(make_pdf(1, "secret"))
    files: dict[str, tuple[bytes | None, str | None]] = {
        "Giấy khai sinh.pdf": (make_pdf(2, "ks"), None),
        "CCCD mặt trước.jpg": (make_image("JPEG", seed=1), None),
        "so-ho-khau.png": (make_image("PNG", seed=2), None),
        "fax nhiều trang.tif": (make_tiff(3), None),
        "trang web.pdf": (b"<html><body>hello</body></html>", "unknown_type"),
        "rong.pdf": (b"", "empty"),
        "anh-that-ra-la-pdf.jpg": (make_pdf(1, "x", seed=3), "type_mismatch"),
        "cut.pdf": (make_pdf(3, "cut")[:900], "pdf_incomplete"),
        "dong\nmoi\u202etxt.pdf": (make_pdf(1, "nl", seed=4), None),
        ("Hồ sơ " * 30)[:120] + ".pdf": (make_pdf(1, "long", seed=5), None),
    }
    for name, (data, _) in files.items():
        (folder / name).write_bytes(data or b"")
    os.symlink(secret, folder / "link-to-secret.pdf")
    os.mkfifo(folder / "pipe.pdf")
    os.link(secret, folder / "hard-link.pdf")

    await settle(hot, folder)
    expected = {name: code for name, (_, code) in files.items()}
    expected |= {"link-to-secret.pdf": "symlink", "pipe.pdf": "not_regular", "hard-link.pdf": "hard_link"}
    await assert_each_exactly_once(db, store, folder, expected)

    assert secret.read_bytes().startswith(b"%PDF-")  # the link target was not touched or stored
    assert not os.path.lexists(folder / REJECTED_DIR / "link-to-secret.pdf")
    inbox = await list_unassigned(db, "quay-3")
    assert len(inbox) == 6 and all(s.scanner == "may-quet-1" for s in inbox)
    jpeg = next(s for s in inbox if s.kind == "jpeg")
    assert jpeg.original.media_type == "image/jpeg" and jpeg.pdf.media_type == "application/pdf"
    assert set(jpeg.manifests()) == {"pdf", "original"}
    async with db.execute("SELECT relation FROM blob_links WHERE derived = ?", (jpeg.pdf.sha256,)) as cur:
        assert [r[0] for r in await cur.fetchall()] == ["pdf_of"]
    reason = (folder / REJECTED_DIR / "trang web.pdf.reason.txt").read_text(encoding="utf-8")
    assert reason.startswith("Mã lỗi: unknown_type\nLý do: ") and "quầy quay-3" in reason


async def _slow_write(path: Path, data: bytes, chunk: int, pause: float) -> None:
    with open(path, "wb") as f:
        for i in range(0, len(data), chunk):
            f.write(data[i : i + chunk])
            f.flush()
            await asyncio.sleep(pause)


@pytest.mark.parametrize("polling", [False, True], ids=["inotify", "polling"])
async def test_slow_writer_is_taken_only_when_complete(
    folder: Path, intake: ScanIntake, db, store, polling
) -> None:
    hot = HotFolder(scanner(folder, polling=polling), intake)
    await hot.start()
    try:
        data = make_pdf(6, "slow")
        await _slow_write(folder / "cham.pdf", data, max(1, len(data) // 12), 0.12)
        await settle(hot, folder)
    finally:
        await hot.stop()
    await assert_each_exactly_once(db, store, folder, {"cham.pdf": None})
    scan = (await scans_by_name(db))["cham.pdf"]
    assert store.read_bytes(scan.original.sha256) == data


async def test_temp_name_then_rename(hot: HotFolder, folder: Path, db, store) -> None:
    data = make_image("JPEG", (1200, 900), seed=9)
    await _slow_write(folder / ".scan0001.jpg.tmp", data, len(data) // 5, 0.05)
    await _slow_write(folder / "scan0002.jpg.part", data[::-1], len(data) // 5, 0.05)  # never renamed
    os.rename(folder / ".scan0001.jpg.tmp", folder / "scan0001.jpg")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while os.path.exists(folder / "scan0001.jpg") and loop.time() < deadline:
        await asyncio.sleep(0.05)
    assert pending(folder) == ["scan0002.jpg.part"]  # temp names are left alone
    (folder / "scan0002.jpg.part").unlink()
    await settle(hot, folder)
    await assert_each_exactly_once(db, store, folder, {"scan0001.jpg": None})
    assert list_rejected(folder) == []


async def test_truncated_files_at_random_offsets_are_rejected(
    hot: HotFolder, folder: Path, db, store
) -> None:
    rng = random.Random(11)
    expected = {}
    for i in range(4):
        pdf = make_pdf(3, "t", seed=i)
        jpg = make_image("JPEG", seed=i)
        (folder / f"t{i}.pdf").write_bytes(pdf[: rng.randrange(1, len(pdf) - 10)])
        (folder / f"t{i}.jpg").write_bytes(jpg[: rng.randrange(1, len(jpg) - 3)])
        expected |= {f"t{i}.pdf": None, f"t{i}.jpg": None}
    await settle(hot, folder)
    rejected = {r.name: r.code for r in list_rejected(folder)}
    assert set(rejected) == set(expected)
    assert set(rejected.values()) <= {
        "pdf_incomplete",
        "pdf_invalid",
        "image_incomplete",
        "image_invalid",
        "unknown_type",
    }
    assert await scans_by_name(db) == {}


async def test_duplicate_content_and_crash_leftover(folder: Path, intake: ScanIntake, db, store) -> None:
    data = make_pdf(2, "dup")
    first = folder / "ban-1.pdf"
    first.write_bytes(data)
    st = first.stat()
    outcome = await intake.process(first, scanner="s", desk="d")
    assert isinstance(outcome, Registered) and not first.exists()

    # Crash after the commit but before the unlink: the same file (name, size, mtime) is back.
    first.write_bytes(data)
    os.utime(first, ns=(st.st_atime_ns, st.st_mtime_ns))
    again = await intake.process(first, scanner="s", desk="d")
    assert isinstance(again, Duplicate) and again.leftover and not first.exists()

    # The same bytes under another name are a real duplicate: rejected, pointing at the first scan.
    (folder / "ban-2.pdf").write_bytes(data)
    await intake.process(folder / "ban-2.pdf", scanner="s", desk="d")
    assert [(r.name, r.code) for r in list_rejected(folder)] == [("ban-2.pdf", "duplicate")]
    assert len(await scans_by_name(db)) == 1 and len(await list_unassigned(db)) == 1


async def test_on_scan_runs_in_the_intake_transaction(folder: Path, store, writer, db) -> None:
    attached: list[tuple[int, str]] = []
    fail = {"left": 1}

    async def on_scan(conn: aiosqlite.Connection, scan: RegisteredScan) -> None:
        if fail["left"]:
            fail["left"] -= 1
            raise RuntimeError("journal unavailable")
        attached.append((scan.id, "000.00.17.H26-261122-0001"))

    intake = ScanIntake(store, writer, on_scan)
    hot = HotFolder(scanner(folder), intake)
    await hot.start()
    try:
        (folder / "to-khai.pdf").write_bytes(make_pdf(1, "tk"))
        await settle(hot, folder)
    finally:
        await hot.stop()
    scans = await scans_by_name(db)
    assert list(scans) == ["to-khai.pdf"]  # the failed attempt rolled back completely
    assert attached == [(scans["to-khai.pdf"].id, "000.00.17.H26-261122-0001")]
    assert await list_unassigned(db) == []


async def test_startup_scan_and_inbox_attach_discard(folder: Path, intake: ScanIntake, writer, db) -> None:
    for i in range(3):
        (folder / f"cu-{i}.pdf").write_bytes(make_pdf(1, "old", seed=20 + i))
    hot = HotFolder(scanner(folder), intake)
    await hot.start()
    try:
        await settle(hot, folder)
    finally:
        await hot.stop()
    inbox = await list_unassigned(db)
    assert [s.display_name for s in inbox] == ["cu-0.pdf", "cu-1.pdf", "cu-2.pdf"] or len(inbox) == 3
    log: list[tuple[str, int]] = []

    async def on_attach(conn, scan):
        log.append(("attach", scan.id))

    async def on_discard(conn, scan):
        log.append(("discard", scan.id))

    async with writer() as conn:
        await attach_unassigned(conn, inbox[0].id, on_attach)
        gone = await discard_unassigned(conn, inbox[1].id, on_discard, now_ms=1)
    assert gone.discarded_at == 1
    assert log == [("attach", inbox[0].id), ("discard", inbox[1].id)]
    assert [s.id for s in await list_unassigned(db)] == [inbox[2].id]
    with pytest.raises(ScanNotFound):
        async with writer() as conn:
            await attach_unassigned(conn, inbox[1].id, on_attach)
    # A discarded scan's bytes may come in again as a new scan.
    intake2 = ScanIntake(intake.blobs, writer, add_unassigned)
    again = folder / "lai.pdf"
    again.write_bytes(intake.blobs.read_bytes(inbox[1].original.sha256))
    assert isinstance(await intake2.process(again, scanner="s", desk="quay-3"), Registered)
