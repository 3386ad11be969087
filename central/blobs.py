"""Blobs at the hub: chunk uploads checked against the manifest in the signed entry, then assembly.

Layout under ``<data>/blobs``::

    sha256/ab/abcdef...        complete files, content-addressed, never modified after the rename
    chunks/<sha256>/<index>    chunks received so far (each checked against its SHA-256 on arrival)
    tmp/                       files being written

Each chunk and the assembled file are written to a temp file, fsynced, renamed, and the directory fsynced
before the database row says they exist. A node may upload or fetch only blobs referenced by an entry
of its own logs or its mailbox (``blob_refs``).
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import aiosqlite

from central.errors import NotFound, Unprocessable, now_ms
from central.store import Extra, SqliteStore
from protocol import BlobMismatch, BlobNeed, Entry, Manifest, canonical, decode, is_hub_log, mailbox_log
from protocol.blobs import MANIFEST_FIELDS, WholeFileHasher
from protocol.entry import HASH_RE

__all__ = ["ATTACHMENT_KINDS", "HubBlobs", "manifest_of"]

ATTACHMENT_KINDS = frozenset({"dossier.attachment", "dossier.result_ready"})


def manifest_of(entry: Entry) -> Manifest | None:
    """The blob manifest an entry carries (``body.manifest`` or ``body.result``), if any and well-formed.

    A ``hub.forward`` carries the manifest of the entry it forwards."""
    kind, body = entry.kind, entry.body
    if kind == "hub.forward" and isinstance(body.get("entry"), dict):
        kind, body = body["entry"].get("kind"), body["entry"].get("body")
        if not isinstance(body, dict):
            return None
    if kind not in ATTACHMENT_KINDS:
        return None
    for name in ("manifest", "result", "file"):
        value = body.get(name)
        if isinstance(value, dict) and value.keys() == MANIFEST_FIELDS:
            try:
                return Manifest.from_body(value)
            except BlobMismatch:
                return None
    return None


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_atomic(
    tmp_dir: Path, target: Path, pieces: Sequence[bytes] | None, src: Sequence[Path] = ()
) -> str:
    """Write ``pieces`` (or the concatenation of files ``src``) to ``target`` durably; return its SHA-256."""
    target.parent.mkdir(parents=True, exist_ok=True)
    hasher = WholeFileHasher()
    fd, name = tempfile.mkstemp(dir=tmp_dir)
    try:
        with os.fdopen(fd, "wb") as out:
            for piece in pieces or ():
                out.write(piece)
                hasher.update(piece)
            for path in src:
                data = path.read_bytes()
                out.write(data)
                hasher.update(data)
            out.flush()
            os.fsync(out.fileno())
        os.rename(name, target)
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise
    _fsync_dir(target.parent)
    return hasher.hexdigest()


class HubBlobs:
    def __init__(self, store: SqliteStore, root: Path) -> None:
        self.store = store
        self.root = root
        self.tmp = root / "tmp"
        self.tmp.mkdir(parents=True, exist_ok=True)
        self._locks: dict[str, asyncio.Lock] = {}

    def path_for(self, sha256: str) -> Path:
        return self.root / "sha256" / sha256[:2] / sha256

    def _chunk_path(self, sha256: str, index: int) -> Path:
        return self.root / "chunks" / sha256 / str(index)

    def hook(
        self, log: str, epoch: int, entries: Sequence[Entry], quarantined: frozenset[int]
    ) -> Extra | None:
        """Receive/mailbox hook: register the blobs named by the accepted entries, in the same transaction."""
        found = [(e, m) for e in entries if e.seq not in quarantined and (m := manifest_of(e)) is not None]
        if not found:
            return None
        # The hub's own entries name files it wrote itself (officers' results, ``store_local``): whole
        # already, so nodes can fetch them at once.
        own = {m.sha256 for _, m in found if is_hub_log(log) and self.path_for(m.sha256).is_file()}

        async def extra(db: aiosqlite.Connection) -> None:
            for entry, manifest in found:
                await db.execute(
                    "INSERT OR IGNORE INTO blobs (sha256, size, media_type, manifest, state, created_ms) "
                    "VALUES (?, ?, ?, ?, 'partial', (SELECT received_ms FROM entries "
                    "WHERE log = ? AND epoch = ? AND seq = ?))",
                    (
                        manifest.sha256,
                        manifest.size,
                        manifest.media_type,
                        canonical(manifest.to_body()),
                        log,
                        epoch,
                        entry.seq,
                    ),
                )
                await db.execute(
                    "INSERT OR IGNORE INTO blob_refs (sha256, log, epoch, seq) VALUES (?, ?, ?, ?)",
                    (manifest.sha256, log, epoch, entry.seq),
                )
            for sha in own:
                await db.execute(
                    "UPDATE blobs SET state = 'complete', completed_ms = ? WHERE sha256 = ? AND state != "
                    "'complete'",
                    (now_ms(), sha),
                )

        return extra

    async def _manifest(self, node: str, sha256: str) -> tuple[Manifest, str] | None:
        if not HASH_RE.fullmatch(sha256):
            raise NotFound("blob_unknown", "a blob is named by its lower-case hex SHA-256")
        row = await self.store.fetchone(
            "SELECT b.manifest, b.state FROM blobs b WHERE b.sha256 = ? AND EXISTS "
            "(SELECT 1 FROM blob_refs r WHERE r.sha256 = b.sha256 AND (r.log = ? OR r.log = ?))",
            (sha256, node, mailbox_log(node)),
        )
        if row is None:
            return None
        return Manifest.from_body(decode(bytes(row[0]))), row[1]

    async def need(self, node: str, shas: Sequence[str]) -> list[BlobNeed]:
        needs = []
        for sha in shas:
            found = await self._manifest(node, sha)
            if found is None:
                needs.append(BlobNeed(sha, "unknown", ()))
                continue
            manifest, state = found
            if state == "complete":
                needs.append(BlobNeed(sha, "complete", ()))
                continue
            held = {
                r[0]
                for r in await self.store.fetchall("SELECT idx FROM blob_chunks WHERE sha256 = ?", (sha,))
            }
            missing = tuple(i for i in range(manifest.count) if i not in held)
            needs.append(BlobNeed(sha, "partial" if held else "missing", missing))
        return needs

    async def put_chunk(self, node: str, sha256: str, index: int, data: bytes) -> bool:
        """Store one checked chunk; assemble when all are here. Returns whether the blob is complete."""
        found = await self._manifest(node, sha256)
        if found is None:
            raise NotFound(
                "blob_unknown", f"no entry of {node} references blob {sha256[:12]}; push metadata first"
            )
        manifest, _ = found
        try:
            manifest.check_chunk(index, data)
        except BlobMismatch as exc:
            raise Unprocessable(exc.code, exc.reason) from None
        lock = self._locks.setdefault(sha256, asyncio.Lock())
        async with lock:
            state = await self.store.fetchone("SELECT state FROM blobs WHERE sha256 = ?", (sha256,))
            if state[0] == "complete":
                return True
            path = self._chunk_path(sha256, index)
            if not path.exists():
                await asyncio.to_thread(_write_atomic, self.tmp, path, [data])
            async with self.store.write() as db:
                await db.execute(
                    "INSERT OR IGNORE INTO blob_chunks (sha256, idx) VALUES (?, ?)", (sha256, index)
                )
            held = await self.store.fetchall("SELECT idx FROM blob_chunks WHERE sha256 = ?", (sha256,))
            if len(held) < manifest.count:
                return False
            await self._assemble(manifest)
            return True

    async def _assemble(self, manifest: Manifest) -> None:
        sha = manifest.sha256
        parts = [self._chunk_path(sha, i) for i in range(manifest.count)]
        target = self.path_for(sha)
        digest = await asyncio.to_thread(_write_atomic, self.tmp, target, None, parts)
        size = target.stat().st_size
        try:
            manifest.check_whole(size, digest)
        except BlobMismatch as exc:  # chunks matched but the whole does not: the manifest lies
            target.unlink(missing_ok=True)
            raise Unprocessable(exc.code, exc.reason) from None
        async with self.store.write() as db:
            await db.execute(
                "UPDATE blobs SET state = 'complete', completed_ms = ? WHERE sha256 = ?", (now_ms(), sha)
            )
            await db.execute("DELETE FROM blob_chunks WHERE sha256 = ?", (sha,))
        for part in parts:
            part.unlink(missing_ok=True)
        parts[0].parent.rmdir()

    async def get_chunk(self, node: str, sha256: str, index: int) -> bytes:
        found = await self._manifest(node, sha256)
        if found is None:
            raise NotFound("blob_unknown", f"no entry {node} may see references blob {sha256[:12]}")
        manifest, state = found
        if state != "complete":
            raise NotFound("blob_incomplete", "the hub does not hold this whole blob yet")
        try:
            length = manifest.chunk_length(index)
        except BlobMismatch as exc:
            raise NotFound("not_found", exc.reason) from None

        def read() -> bytes:
            with open(self.path_for(sha256), "rb") as f:
                f.seek(index * manifest.chunk_size)
                return f.read(length)

        data = await asyncio.to_thread(read)
        manifest.check_chunk(index, data)  # never serve rotten bytes
        return data

    async def store_local(self, data: bytes, manifest: Manifest) -> None:
        """Officers' result files: written whole by the hub itself (registered by the mailbox hook)."""
        target = self.path_for(manifest.sha256)
        if not target.exists():
            digest = await asyncio.to_thread(_write_atomic, self.tmp, target, [data])
            manifest.check_whole(len(data), digest)
