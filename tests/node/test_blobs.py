"""Blob store: durable staging, registration, dedup, verification, fault injection, crash sweep."""

from __future__ import annotations

import errno
import hashlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import aiosqlite
import pytest

from node.blobcipher import ciphertext_size
from node.blobs import CHUNK_SIZE, BlobStore, FileOps, get_blob, register_blob
from node.errors import BlobCorrupt, BlobNotFound, DiskFull, FsyncFailed, StorageError
from tests.tools import keyring

ROOT = Path(__file__).resolve().parents[2]


def _files(store: BlobStore) -> list[Path]:
    return sorted(p for p in store.root.rglob("*") if p.is_file())


async def test_stage_register_open_and_manifest(store: BlobStore, writer) -> None:
    data = os.urandom(CHUNK_SIZE * 2 + 12345)
    staged = store.stage_bytes(data)
    digest = hashlib.sha256(data).hexdigest()
    assert staged.sha256 == digest and staged.size == len(data) and not staged.existed
    assert staged.path == store.root / "sha256" / digest[:2] / digest
    assert staged.chunks == tuple(
        hashlib.sha256(data[i : i + CHUNK_SIZE]).hexdigest() for i in range(0, len(data), CHUNK_SIZE)
    )
    async with writer() as db:
        info = await register_blob(db, staged, media_type="application/pdf", pages=3, display_name="Tờ.pdf")
    assert info.manifest()["chunks"] == list(staged.chunks) and info.chunk_size == CHUNK_SIZE
    assert store.read_bytes(digest) == data
    assert list(store.tmp_dir.iterdir()) == []


async def test_dedup_same_bytes_stored_once(store: BlobStore, writer, db: aiosqlite.Connection) -> None:
    data = b"%PDF-1.7 same bytes twice"
    first = store.stage_bytes(data)
    second = store.stage_bytes(data)
    assert second.existed and second.path == first.path
    async with writer() as conn:
        a = await register_blob(conn, first, media_type="application/pdf", pages=1, display_name="a.pdf")
        b = await register_blob(conn, second, media_type="application/pdf", pages=1, display_name="b.pdf")
    assert a == b and a.display_name == "a.pdf"
    async with db.execute("SELECT count(*) FROM blobs") as cur:
        assert (await cur.fetchone())[0] == 1
    assert len(_files(store)) == 1


async def test_corruption_detected_on_read(store: BlobStore, writer) -> None:
    staged = store.stage_bytes(b"x" * 5000)
    async with writer() as db:
        await register_blob(db, staged, media_type="image/png", pages=1, display_name="x.png")
    raw = bytearray(staged.path.read_bytes())
    raw[100] ^= 0x01
    staged.path.write_bytes(bytes(raw))
    with pytest.raises(BlobCorrupt):
        store.open_blob(staged.sha256)
    assert not store.verify(staged.sha256)
    with pytest.raises(BlobNotFound):
        store.open_blob("0" * 64)
    with pytest.raises(BlobNotFound):
        store.path_for("../../etc/passwd")
    # A fresh copy of the right bytes repairs the damaged file instead of trusting it.
    assert not store.stage_bytes(b"x" * 5000).existed
    assert store.verify(staged.sha256)


def test_fsync_error_discards_and_is_never_retried(tmp_path: Path) -> None:
    calls: list[int] = []

    def failing_fsync(fd: int) -> None:
        calls.append(fd)
        raise OSError(errno.EIO, "Input/output error")

    BlobStore(tmp_path, keyring=keyring(tmp_path))  # its folders exist: the fault hits the write path only
    store = BlobStore(tmp_path, keyring=keyring(tmp_path), low_disk_bytes=0, ops=FileOps(fsync=failing_fsync))
    with pytest.raises(FsyncFailed) as err:
        store.stage_bytes(b"scan bytes" * 1000)
    assert len(calls) == 1, "fsync must not be retried after an error (fsyncgate)"
    assert "Lỗi ghi ổ đĩa" in err.value.message
    assert _files(store) == []


def test_enospc_mid_write_leaves_nothing(tmp_path: Path) -> None:
    written = 0

    def write(fd: int, data: memoryview) -> int:
        nonlocal written
        if written > CHUNK_SIZE:
            raise OSError(errno.ENOSPC, "No space left on device")
        n = os.write(fd, data)
        written += n
        return n

    store = BlobStore(tmp_path, keyring=keyring(tmp_path), low_disk_bytes=0, ops=FileOps(write=write))
    with pytest.raises(DiskFull) as err:
        store.stage_bytes(os.urandom(3 * CHUNK_SIZE))
    assert err.value.retryable and "đầy" in err.value.message
    assert _files(store) == []
    # Space comes back: the same store works again without any repair.
    ok = BlobStore(tmp_path, keyring=keyring(tmp_path), low_disk_bytes=0)
    assert ok.verify(ok.stage_bytes(b"after").sha256)


def test_new_folders_are_fsynced_in_their_parent(tmp_path: Path) -> None:
    """A folder's entry survives a power cut only once its parent is fsynced (found by D3)."""
    synced: list[str] = []

    def fsync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        os.fsync(fd)

    BlobStore(tmp_path / "state", ops=FileOps(fsync=fsync))
    root = tmp_path / "state"
    assert synced == [str(root), str(root / "blobs"), str(root / "blobs")]
    synced.clear()
    BlobStore(tmp_path / "state", ops=FileOps(fsync=fsync))  # nothing new: nothing to fsync
    assert synced == []


def test_directory_fsync_error_withdraws_the_rename(tmp_path: Path) -> None:
    seen = {"n": 0}

    def fsync(fd: int) -> None:
        seen["n"] += 1
        if seen["n"] >= 2:  # 1 = the file, then the directories
            raise OSError(errno.EIO, "Input/output error")
        os.fsync(fd)

    BlobStore(tmp_path, keyring=keyring(tmp_path))  # its folders exist: the fault hits the write path only
    store = BlobStore(tmp_path, keyring=keyring(tmp_path), low_disk_bytes=0, ops=FileOps(fsync=fsync))
    with pytest.raises(FsyncFailed):
        store.stage_bytes(b"dir fsync fails")
    assert _files(store) == []


def test_low_disk_watermark_refuses_before_writing(tmp_path: Path) -> None:
    store = BlobStore(
        tmp_path,
        keyring=keyring(tmp_path),
        low_disk_bytes=100 << 20,
        ops=FileOps(free_bytes=lambda _p: 120 << 20),
    )
    store.stage_bytes(b"small")  # 120 MB free - 5 bytes is above the 100 MB watermark
    with pytest.raises(DiskFull) as err:
        store.stage_bytes(b"y" * (30 << 20))
    assert "ngưỡng an toàn 100 MB" in err.value.message
    assert list(store.tmp_dir.iterdir()) == []


def test_stage_file_refuses_a_file_that_grew(store: BlobStore, tmp_path: Path) -> None:
    src = tmp_path / "growing.pdf"
    src.write_bytes(b"a" * 1000)
    with open(src, "rb") as f, pytest.raises(StorageError):
        store.stage_file(f, 500)
    assert list(store.tmp_dir.iterdir()) == []


async def test_sweep_removes_temps_and_orphans_keeps_registered(store: BlobStore, writer, db) -> None:
    kept = store.stage_bytes(b"registered")
    async with writer() as conn:
        await register_blob(conn, kept, media_type="application/pdf", pages=1, display_name="k.pdf")
    orphan = store.stage_bytes(b"staged, then the process died before the transaction")
    with pytest.raises(RuntimeError):
        async with writer() as conn:
            await register_blob(conn, orphan, media_type="application/pdf", pages=1, display_name="o.pdf")
            raise RuntimeError("crash inside the transaction")
    (store.tmp_dir / "blob-half.tmp").write_bytes(b"half a file")
    gone = store.stage_bytes(b"registered but its file was lost")
    async with writer() as conn:
        await register_blob(conn, gone, media_type="application/pdf", pages=1, display_name="g.pdf")
    gone.path.unlink()

    report = await store.sweep(db)
    assert (report.temp_removed, report.orphans_removed, report.missing) == (1, 1, (gone.sha256,))
    assert _files(store) == [kept.path]
    assert await get_blob(db, orphan.sha256) is None


CHILD = textwrap.dedent(
    """
    import asyncio, os, sys
    sys.path.insert(0, {root!r})
    from node.blobs import BlobStore, register_blob
    from tests.node.conftest import open_db, make_writer
    from tests.tools import keyring

    async def main():
        db = await open_db({db!r})
        store = BlobStore({state!r}, low_disk_bytes=0, keyring=keyring({state!r}))
        write = make_writer(db)
        print("ready", flush=True)
        i = 0
        while True:
            i += 1
            data = os.urandom(200_000 + i)
            staged = await asyncio.to_thread(store.stage_bytes, data)
            async with write() as conn:
                await register_blob(conn, staged, media_type="x/y", pages=1, display_name=f"{{i}}.pdf")

    asyncio.run(main())
    """
)


async def test_sigkill_during_writes_leaves_only_complete_registered_blobs(tmp_path: Path) -> None:
    state, dbfile = tmp_path / "state", tmp_path / "crash.sqlite3"
    script = CHILD.format(root=str(ROOT), db=str(dbfile), state=str(state))
    for round_ in range(4):
        child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, cwd=ROOT)
        assert child.stdout is not None and child.stdout.readline().strip() == b"ready"
        time.sleep(0.15 + 0.1 * round_)
        child.send_signal(signal.SIGKILL)
        child.wait()
        child.stdout.close()

        from tests.node.conftest import open_db

        db = await open_db(dbfile)
        store = BlobStore(state, keyring=keyring(state), low_disk_bytes=0)
        report = await store.sweep(db)
        assert report.missing == ()
        async with db.execute("SELECT sha256, size FROM blobs") as cur:
            rows = await cur.fetchall()
        async with db.execute("PRAGMA integrity_check") as cur:
            assert (await cur.fetchone())[0] == "ok"
        await db.close()
        assert rows, "the child should have registered something"
        for sha, size in rows:
            assert store.verify(sha) and store.path_for(sha).stat().st_size == ciphertext_size(size)
        on_disk = {p.name for p in (state / "blobs" / "sha256").rglob("*") if p.is_file()}
        assert on_disk == {sha for sha, _ in rows}
        assert list(store.tmp_dir.iterdir()) == []
