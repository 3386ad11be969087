"""Content-addressed blob store: scans, converted PDFs and rendered forms, named by SHA-256.

Layout under the node's state directory::

    <state>/blobs/sha256/ab/abcdef...   one file per blob, never modified after the rename
    <state>/blobs/tmp/                   temp files being written (same filesystem, so rename is atomic)

Protocol (ALICE / fsyncgate, RELIABILITY.md §1.3), in two phases so the slow file work stays outside
the SQLite write transaction:

1. ``stage_*`` (blocking, run it in a thread): check the low-disk watermark, write a temp file while
   hashing it (whole file and 1 MiB chunks), ``fsync`` it, ``rename`` it to its content address,
   ``fsync`` the directory. Any error discards the temp file and raises; an fsync error is never
   retried, because after a failed fsync Linux may drop the dirty pages and a second fsync "succeeds".
2. ``register(db, staged, ...)`` inside the caller's write transaction: the ``blobs`` row.

A crash between the phases leaves a complete but unregistered file: ``sweep(db)`` at startup (before
any intake runs) deletes it together with every temp file. A registered row therefore always has its
complete file; ``open_blob`` re-checks the hash on read.

Encryption at rest (node.blobcipher, RELIABILITY P1): the file at a blob's address is its AES-256-GCM
ciphertext (64 KiB chunks); the address stays the SHA-256 of the plaintext. The plaintext is hashed
first (one pass over a file, or the bytes in memory), then encrypted under that hash while it streams
to the temp file, and hashed again (a file that changed between the passes is refused). Plaintext
bytes of a scan never touch the disk here: ``open_blob`` returns a decrypting, authenticating reader
(``BlobAuthFailed`` on any flipped or missing byte) and ``read_range`` serves sync uploads.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
import stat
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import aiosqlite

from node.atrest import Keyring, keyring_for
from node.blobcipher import DecryptingReader, ciphertext_size, encrypt_chunks
from node.errors import BlobCorrupt, BlobNotFound, DiskFull, FsyncFailed, StorageError

__all__ = [
    "BLOBS_SQL",
    "CHUNK_SIZE",
    "BlobInfo",
    "BlobStore",
    "FileOps",
    "StagedBlob",
    "SweepReport",
    "fsync_dir",
    "get_blob",
    "link_blobs",
    "register_blob",
]

CHUNK_SIZE = 1 << 20
_HEX64 = re.compile(r"[0-9a-f]{64}")

BLOBS_SQL = """
CREATE TABLE IF NOT EXISTS blobs (
    sha256       TEXT PRIMARY KEY CHECK (length(sha256) = 64),
    size         INTEGER NOT NULL CHECK (size >= 0),
    media_type   TEXT NOT NULL,
    pages        INTEGER CHECK (pages IS NULL OR pages >= 0),
    chunk_size   INTEGER NOT NULL CHECK (chunk_size > 0),
    chunks       TEXT NOT NULL,          -- JSON array of the SHA-256 (hex) of each chunk, in order
    display_name TEXT NOT NULL,          -- sanitised NFC name of the first file with these bytes
    created_at   INTEGER NOT NULL        -- unix time, milliseconds
) STRICT;

-- How blobs derive from each other, e.g. the lossless PDF made from a scanned JPEG ('pdf_of').
CREATE TABLE IF NOT EXISTS blob_links (
    derived  TEXT NOT NULL REFERENCES blobs (sha256),
    source   TEXT NOT NULL REFERENCES blobs (sha256),
    relation TEXT NOT NULL,
    PRIMARY KEY (derived, source, relation)
) STRICT;
"""


def _free_bytes(path: str) -> int:
    return shutil.disk_usage(path).free


@dataclass(frozen=True, slots=True)
class FileOps:
    """The filesystem calls of the write path. Tests replace one of them to inject EIO or ENOSPC."""

    write: Callable[[int, memoryview], int] = os.write
    fsync: Callable[[int], None] = os.fsync
    replace: Callable[[str, str], None] = os.replace
    free_bytes: Callable[[str], int] = _free_bytes


def fsync_dir(path: Path, ops: FileOps | None = None) -> None:
    """fsync a directory so a rename or unlink inside it survives power loss."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        (ops or FileOps()).fsync(fd)
    finally:
        os.close(fd)


@dataclass(frozen=True, slots=True)
class StagedBlob:
    """A blob file that is durable at its content address but not yet registered in SQLite."""

    sha256: str
    size: int
    chunk_size: int
    chunks: tuple[str, ...]
    path: Path
    existed: bool  # the same bytes were already on disk (dedup): nothing was written


@dataclass(frozen=True, slots=True)
class BlobInfo:
    """A registered blob (one row of ``blobs``)."""

    sha256: str
    size: int
    media_type: str
    pages: int | None
    chunk_size: int
    chunks: tuple[str, ...]
    display_name: str
    created_at: int

    def manifest(self) -> dict[str, Any]:
        """The blob manifest carried by a ``dossier.attachment`` entry and used by the sync layer."""
        return {
            "sha256": self.sha256,
            "size": self.size,
            "media_type": self.media_type,
            "pages": self.pages,
            "chunk_size": self.chunk_size,
            "chunks": list(self.chunks),
        }


@dataclass(frozen=True, slots=True)
class SweepReport:
    """What ``BlobStore.sweep`` cleaned up at startup, and registered blobs whose file is missing."""

    temp_removed: int = 0
    orphans_removed: int = 0
    missing: tuple[str, ...] = field(default_factory=tuple)


def _check_sha(sha256: str) -> str:
    if not isinstance(sha256, str) or not _HEX64.fullmatch(sha256):
        raise BlobNotFound(detail=f"not a sha256 hex digest: {sha256!r}")
    return sha256


def _error_from(exc: OSError, *, during: str) -> StorageError:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return DiskFull(detail=f"{during}: {exc.strerror}")
    if during in ("fsync", "rename", "fsync_dir"):
        return FsyncFailed(detail=f"{during}: {exc.strerror or exc}")
    return StorageError(detail=f"{during}: {exc.strerror or exc}")


class BlobStore:
    """Files of the content-addressed store; SQL lives in the module functions below."""

    def __init__(
        self,
        state_dir: Path,
        *,
        low_disk_bytes: int = 512 << 20,
        ops: FileOps | None = None,
        keyring: Keyring | None = None,
    ) -> None:
        self.state_dir = Path(state_dir)
        self._keyring = keyring
        self.root = Path(state_dir) / "blobs"
        self.objects = self.root / "sha256"
        self.tmp_dir = self.root / "tmp"
        self.low_disk_bytes = low_disk_bytes
        self.ops = ops or FileOps()
        for d in (self.root, self.objects, self.tmp_dir):
            if not d.is_dir():
                # a new folder's entry is durable only once its parent is fsynced (found by D3: after a
                # power cut the first registered blob lost its whole ``sha256/`` folder)
                d.mkdir(mode=0o700, parents=True, exist_ok=True)
                fsync_dir(d.parent, self.ops)

    @property
    def keyring(self) -> Keyring:
        """The unlocked keyring of the node (DataLocked while a passphrase is still needed)."""
        if self._keyring is None:
            self._keyring = keyring_for(self.state_dir)
        return self._keyring

    def path_for(self, sha256: str) -> Path:
        _check_sha(sha256)
        return self.objects / sha256[:2] / sha256

    # -- space -----------------------------------------------------------------------------------

    def check_space(self, needed: int) -> None:
        """Refuse a write that would leave less than the low-disk watermark free."""
        free = self.ops.free_bytes(str(self.root))
        if free - needed < self.low_disk_bytes:
            raise DiskFull(
                f"Ổ đĩa máy trạm sắp đầy: còn {free / 1048576:.0f} MB trống, dưới ngưỡng an toàn "
                f"{self.low_disk_bytes / 1048576:.0f} MB. Tạm dừng nhận bản quét; "
                "hãy giải phóng dung lượng (hoặc chờ đồng bộ xong) rồi thử lại.",
                detail=f"free={free} needed={needed} watermark={self.low_disk_bytes}",
            )

    # -- phase 1: durable file -------------------------------------------------------------------

    def stage_bytes(self, data: bytes) -> StagedBlob:
        """Store ``data`` durably (encrypted) at its content address (blocking)."""
        view = memoryview(data)
        digest, chunks = _digests(view[i : i + CHUNK_SIZE] for i in range(0, len(view), CHUNK_SIZE))
        return self._stage(digest, len(data), chunks, lambda: iter((view,)))

    def stage_file(self, src: BinaryIO, size: int) -> StagedBlob:
        """Copy an open binary file (from its current position) durably into the store (blocking).

        ``size`` is the size the caller validated (from fstat); a file that turns out longer or
        shorter is refused, since its bytes are not the ones that were checked. The file is read twice
        (hash, then encrypt under that hash); bytes that change between the passes are refused.
        """
        start = src.tell()
        digest, chunks = _digests(_read_chunks(src))
        got = src.tell() - start
        if got != size:
            raise StorageError("Tệp thay đổi trong khi đang được lưu.", detail=f"size {size} -> {got}")

        def again() -> Iterable[memoryview]:
            src.seek(start)
            return _read_chunks(src)

        return self._stage(digest, size, chunks, again)

    def _stage(
        self,
        digest: str,
        size: int,
        chunks: tuple[str, ...],
        pieces: Callable[[], Iterable[memoryview | bytes]],
    ) -> StagedBlob:
        self.check_space(ciphertext_size(size))
        final = self.path_for(digest)
        if _same_blob(self, final, digest):
            return StagedBlob(digest, size, CHUNK_SIZE, chunks, final, existed=True)
        ring = self.keyring
        fd, tmp_name = tempfile.mkstemp(prefix="blob-", suffix=".tmp", dir=self.tmp_dir)
        tmp = Path(tmp_name)
        check = hashlib.sha256()

        def plain() -> Iterable[memoryview | bytes]:
            for piece in pieces():
                check.update(piece)
                yield piece

        during = "write"
        try:
            try:
                for sealed in encrypt_chunks(ring, digest, plain()):
                    view = memoryview(sealed)
                    while view:
                        view = view[self.ops.write(fd, view) :]
                during = "fsync"
                self.ops.fsync(fd)
            except OSError as exc:
                raise _error_from(exc, during=during) from exc
            finally:
                os.close(fd)
            if check.hexdigest() != digest:
                raise StorageError("Tệp thay đổi trong khi đang được lưu.", detail=f"{digest} changed")
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        try:
            if not final.parent.is_dir():
                final.parent.mkdir(mode=0o700, exist_ok=True)
                fsync_dir(self.objects, self.ops)
            self.ops.replace(str(tmp), str(final))
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise _error_from(exc, during="rename") from exc
        try:
            fsync_dir(final.parent, self.ops)
        except OSError as exc:
            # The rename may or may not survive a crash: withdraw it rather than register a maybe.
            final.unlink(missing_ok=True)
            raise _error_from(exc, during="fsync_dir") from exc
        return StagedBlob(digest, size, CHUNK_SIZE, chunks, final, existed=False)

    # -- reading ---------------------------------------------------------------------------------

    def open_blob(self, sha256: str, *, verify: bool = True) -> BinaryIO:
        """A decrypting reader of a blob. With ``verify`` the whole plaintext is hashed first.

        Any changed, missing or foreign byte raises ``BlobAuthFailed`` (a ``BlobCorrupt``).
        """
        path = self.path_for(sha256)
        try:
            raw = open(path, "rb")  # wrapped and returned to the caller, who closes it
        except FileNotFoundError as exc:
            raise BlobNotFound(detail=sha256) from exc
        f = DecryptingReader(raw, self.keyring, sha256)
        if verify:
            try:
                digest = hashlib.file_digest(f, "sha256").hexdigest()  # type: ignore[arg-type]
            except BaseException:
                f.close()
                raise
            if digest != sha256:
                f.close()
                raise BlobCorrupt(detail=f"{sha256} hashes to {digest}")
            f.seek(0)
        return f  # type: ignore[return-value]

    def read_bytes(self, sha256: str) -> bytes:
        """The verified content of a (small) blob."""
        with self.open_blob(sha256) as f:
            return f.read()

    def read_range(self, sha256: str, offset: int, length: int) -> bytes:
        """``length`` plaintext bytes from ``offset`` (the chunks read are authenticated)."""
        with self.open_blob(sha256, verify=False) as f:
            f.seek(offset)
            return f.read(length)

    def verify(self, sha256: str) -> bool:
        """True when the blob file exists and hashes to its name."""
        try:
            self.open_blob(sha256).close()
        except (BlobNotFound, BlobCorrupt):
            return False
        return True

    def verify_file(self, path: Path, sha256: str) -> bool:
        """True when the encrypted file ``path`` (e.g. in a backup) authenticates as blob ``sha256``."""
        try:
            with open(path, "rb") as raw:
                reader = DecryptingReader(raw, self.keyring, sha256)
                return hashlib.file_digest(reader, "sha256").hexdigest() == sha256  # type: ignore[arg-type]
        except (OSError, BlobCorrupt):
            return False

    # -- startup ---------------------------------------------------------------------------------

    async def sweep(self, db: aiosqlite.Connection) -> SweepReport:
        """Remove temp files and unregistered blob files; report registered blobs without a file.

        Run once at startup, before the hot folders and the print worker start: a blob staged by a
        running intake is unregistered for a moment and would be taken for an orphan.
        """
        async with db.execute("SELECT sha256 FROM blobs") as cur:
            registered = {row[0] async for row in cur}
        return _sweep_files(self, registered)


def _read_chunks(src: BinaryIO) -> Iterable[memoryview]:
    while True:
        buf = bytearray(CHUNK_SIZE)
        view = memoryview(buf)
        filled = 0
        while filled < CHUNK_SIZE:
            n = src.readinto(view[filled:])  # type: ignore[attr-defined]
            if not n:
                break
            filled += n
        if filled:
            yield view[:filled]
        if filled < CHUNK_SIZE:
            return


def _digests(pieces: Iterable[memoryview | bytes]) -> tuple[str, tuple[str, ...]]:
    """SHA-256 of the whole and of each (1 MiB) piece."""
    whole = hashlib.sha256()
    chunks = []
    for piece in pieces:
        whole.update(piece)
        chunks.append(hashlib.sha256(piece).hexdigest())
    if not chunks:
        return whole.hexdigest(), ()
    return whole.hexdigest(), tuple(chunks)


def _same_blob(store: BlobStore, path: Path, sha256: str) -> bool:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    if not stat.S_ISREG(st.st_mode):
        return False
    return store.verify(sha256)


def _sweep_files(store: BlobStore, registered: set[str]) -> SweepReport:
    temp_removed = orphans_removed = 0
    for entry in os.scandir(store.tmp_dir):
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path, ignore_errors=True)
        else:
            os.unlink(entry.path)
        temp_removed += 1
    on_disk: set[str] = set()
    for sub in os.scandir(store.objects):
        if not sub.is_dir(follow_symlinks=False):
            os.unlink(sub.path)
            orphans_removed += 1
            continue
        for entry in os.scandir(sub.path):
            name = entry.name
            if name in registered and entry.is_file(follow_symlinks=False) and name[:2] == sub.name:
                on_disk.add(name)
                continue
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path, ignore_errors=True)
            else:
                os.unlink(entry.path)
            orphans_removed += 1
    if temp_removed:
        fsync_dir(store.tmp_dir)
    if orphans_removed:
        for sub in os.scandir(store.objects):
            if sub.is_dir(follow_symlinks=False):
                fsync_dir(Path(sub.path))
    return SweepReport(temp_removed, orphans_removed, tuple(sorted(registered - on_disk)))


# -- SQL -----------------------------------------------------------------------------------------


def _row_to_info(row: Any) -> BlobInfo:
    return BlobInfo(
        sha256=row[0],
        size=row[1],
        media_type=row[2],
        pages=row[3],
        chunk_size=row[4],
        chunks=tuple(json.loads(row[5])),
        display_name=row[6],
        created_at=row[7],
    )


_SELECT = "SELECT sha256, size, media_type, pages, chunk_size, chunks, display_name, created_at FROM blobs"


async def register_blob(
    db: aiosqlite.Connection,
    staged: StagedBlob,
    *,
    media_type: str,
    pages: int | None,
    display_name: str,
    created_at: int | None = None,
) -> BlobInfo:
    """Register a staged blob inside the caller's write transaction (idempotent: dedup by hash)."""
    await db.execute(
        "INSERT INTO blobs (sha256, size, media_type, pages, chunk_size, chunks, display_name, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (sha256) DO NOTHING",
        (
            staged.sha256,
            staged.size,
            media_type,
            pages,
            staged.chunk_size,
            json.dumps(list(staged.chunks), separators=(",", ":")),
            display_name,
            created_at if created_at is not None else int(time.time() * 1000),
        ),
    )
    info = await get_blob(db, staged.sha256)
    assert info is not None
    return info


async def get_blob(db: aiosqlite.Connection, sha256: str) -> BlobInfo | None:
    """The registered blob with this hash, or None."""
    async with db.execute(_SELECT + " WHERE sha256 = ?", (sha256,)) as cur:
        row = await cur.fetchone()
    return _row_to_info(row) if row else None


async def link_blobs(db: aiosqlite.Connection, *, derived: str, source: str, relation: str) -> None:
    """Record that ``derived`` was made from ``source`` (e.g. relation 'pdf_of')."""
    await db.execute(
        "INSERT OR IGNORE INTO blob_links (derived, source, relation) VALUES (?, ?, ?)",
        (derived, source, relation),
    )
