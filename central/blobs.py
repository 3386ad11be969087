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
import hashlib
import os
import tempfile
from collections.abc import Callable, Sequence
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
    tmp_dir: Path,
    target: Path,
    parts: Sequence[bytes | Path],
    *,
    known: str | None = None,
    check: Callable[[int, str], None] | None = None,
) -> str:
    """Write the concatenation of ``parts`` (bytes, or files to copy) to ``target`` durably; return its
    SHA-256 (``known`` when the caller already holds it: nothing is hashed again).

    ``check(size, sha256)`` runs after the fsync and before the rename: if it raises, nothing is renamed.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    hasher = None if known is not None else WholeFileHasher()
    size = 0
    fd, name = tempfile.mkstemp(dir=tmp_dir)
    try:
        with os.fdopen(fd, "wb") as out:
            for part in parts:
                data = part if isinstance(part, bytes) else part.read_bytes()
                out.write(data)
                size += len(data)
                if hasher is not None:
                    hasher.update(data)
            out.flush()
            os.fsync(out.fileno())
        digest = known if hasher is None else hasher.hexdigest()
        if check is not None:
            check(size, digest)
        os.rename(name, target)
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise
    _fsync_dir(target.parent)
    return digest


def check_chunk(manifest: Manifest, index: int, data: bytes, digest: str) -> None:
    """``Manifest.check_chunk`` for a chunk whose SHA-256 (hex) is already known."""
    expected = manifest.chunk_length(index)
    if len(data) != expected:
        raise BlobMismatch(f"chunk {index} has {len(data)} bytes, the manifest says {expected}")
    if digest != manifest.chunks[index]:
        raise BlobMismatch(f"chunk {index} does not match its SHA-256 in the manifest")


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
            await db.executemany(
                "INSERT OR IGNORE INTO blobs (sha256, size, media_type, manifest, state, created_ms) "
                "VALUES (?, ?, ?, ?, 'partial', (SELECT received_ms FROM entries "
                "WHERE log = ? AND epoch = ? AND seq = ?))",
                [
                    (m.sha256, m.size, m.media_type, canonical(m.to_body()), log, epoch, entry.seq)
                    for entry, m in found
                ],
            )
            await db.executemany(
                "INSERT OR IGNORE INTO blob_refs (sha256, log, epoch, seq) VALUES (?, ?, ?, ?)",
                [(m.sha256, log, epoch, entry.seq) for entry, m in found],
            )
            await db.executemany(
                "UPDATE blobs SET state = 'complete', completed_ms = ? WHERE sha256 = ? AND state != "
                "'complete'",
                [(now_ms(), sha) for sha in own],
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
        """For each blob: ``unknown`` (no entry ``node`` may see names it), ``complete``, or the missing
        chunks (``partial``/``missing``). Two queries whatever the number of blobs."""
        for sha in shas:
            if not HASH_RE.fullmatch(sha):
                raise NotFound("blob_unknown", "a blob is named by its lower-case hex SHA-256")
        wanted = list(dict.fromkeys(shas))
        if not wanted:
            return []
        marks = ",".join("?" * len(wanted))
        visible = {
            row[0]: (Manifest.from_body(decode(bytes(row[1]))), row[2])
            for row in await self.store.fetchall(
                f"SELECT b.sha256, b.manifest, b.state FROM blobs b WHERE b.sha256 IN ({marks}) AND EXISTS "
                "(SELECT 1 FROM blob_refs r WHERE r.sha256 = b.sha256 AND (r.log = ? OR r.log = ?))",
                (*wanted, node, mailbox_log(node)),
            )
        }
        partial = [sha for sha, (_, state) in visible.items() if state != "complete"]
        held: dict[str, set[int]] = {sha: set() for sha in partial}
        if partial:
            for sha, idx in await self.store.fetchall(
                f"SELECT sha256, idx FROM blob_chunks WHERE sha256 IN ({','.join('?' * len(partial))})",
                partial,
            ):
                held[sha].add(idx)
        needs = []
        for sha in shas:
            if sha not in visible:
                needs.append(BlobNeed(sha, "unknown", ()))
                continue
            manifest, state = visible[sha]
            if state == "complete":
                needs.append(BlobNeed(sha, "complete", ()))
                continue
            missing = tuple(i for i in range(manifest.count) if i not in held[sha])
            needs.append(BlobNeed(sha, "partial" if held[sha] else "missing", missing))
        return needs

    async def put_chunk(
        self, node: str, sha256: str, index: int, data: bytes, digest: str | None = None
    ) -> bool:
        """Store one checked chunk; assemble when all are here. Returns whether the blob is complete.

        ``digest`` is the chunk's SHA-256 when the caller already computed it (the sync API checked the
        request body against it). The chunk that completes a blob is not written on its own: the whole
        file is assembled from the chunks held and this one, checked, fsynced and renamed."""
        found = await self._manifest(node, sha256)
        if found is None:
            raise NotFound(
                "blob_unknown", f"no entry of {node} references blob {sha256[:12]}; push metadata first"
            )
        manifest, _ = found
        if digest is None:
            digest = hashlib.sha256(data).hexdigest()
        try:
            check_chunk(manifest, index, data, digest)
        except BlobMismatch as exc:
            raise Unprocessable(exc.code, exc.reason) from None
        lock = self._locks.setdefault(sha256, asyncio.Lock())
        async with lock:
            rows = await self.store.fetchall(
                "SELECT b.state, c.idx FROM blobs b LEFT JOIN blob_chunks c ON c.sha256 = b.sha256 "
                "WHERE b.sha256 = ?",
                (sha256,),
            )
            if rows[0][0] == "complete":
                return True
            held = {idx for _, idx in rows if idx is not None}
            if all(i in held for i in range(manifest.count) if i != index):
                await self._assemble(manifest, index, data, digest)
                return True
            path = self._chunk_path(sha256, index)
            if not path.exists():
                await asyncio.to_thread(_write_atomic, self.tmp, path, [data], known=digest)
            async with self.store.write() as db:
                await db.execute(
                    "INSERT OR IGNORE INTO blob_chunks (sha256, idx) VALUES (?, ?)", (sha256, index)
                )
            return False

    async def _assemble(self, manifest: Manifest, index: int, data: bytes, digest: str) -> None:
        """Write the whole file from the held chunks and chunk ``index`` (in memory), check it, mark it
        complete. A one-chunk file is that chunk: its SHA-256 is already known."""
        sha = manifest.sha256
        parts: list[bytes | Path] = [
            data if i == index else self._chunk_path(sha, i) for i in range(manifest.count)
        ]
        try:
            await asyncio.to_thread(
                _write_atomic,
                self.tmp,
                self.path_for(sha),
                parts,
                known=digest if manifest.count == 1 else None,
                check=manifest.check_whole,
            )
        except BlobMismatch as exc:  # chunks matched but the whole does not: the manifest lies
            raise Unprocessable(exc.code, exc.reason) from None
        async with self.store.write() as db:
            await db.execute(
                "UPDATE blobs SET state = 'complete', completed_ms = ? WHERE sha256 = ?", (now_ms(), sha)
            )
            await db.execute("DELETE FROM blob_chunks WHERE sha256 = ?", (sha,))
        chunk_dir = self.root / "chunks" / sha
        if chunk_dir.exists():
            for part in chunk_dir.iterdir():
                part.unlink(missing_ok=True)
            chunk_dir.rmdir()

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
            await asyncio.to_thread(_write_atomic, self.tmp, target, [data], check=manifest.check_whole)
