"""Blobs at the hub: chunk uploads checked against the manifest in the signed entry, then assembly.

Layout under ``<data>/blobs``::

    sha256/ab/abcdef...        complete files, content-addressed, never modified after the rename
    chunks/<sha256>/<index>    chunks received so far (each checked against its SHA-256 on arrival)
    tmp/                       files being written

Each chunk and the assembled file are checked, written to a temp file and queued; durability comes in
groups: every file fsynced, renamed, every directory touched fsynced, then one transaction records the
group. No database row says a file exists before it is durable at its place, and a blob is acknowledged
(``complete`` in a PUT answer or in ``need``) only after its group's commit. A node may upload or fetch
only blobs referenced by an entry of its own logs or its mailbox (``blob_refs``).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import tempfile
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import aiosqlite

from central.errors import NotFound, Unprocessable, now_ms
from central.store import Extra, SqliteStore
from protocol import BlobMismatch, BlobNeed, Entry, Manifest, canonical, decode, is_hub_log, mailbox_log
from protocol.blobs import MANIFEST_FIELDS, WholeFileHasher
from protocol.entry import HASH_RE

__all__ = ["ATTACHMENT_KINDS", "MAX_UNSYNCED_BYTES", "HubBlobs", "manifest_of"]

log = logging.getLogger("motcua.central.blobs")

# Chunks written but not yet durable, at most (deferred uploads wait for a group commit past this): what
# a crash of the hub can cost a node that uploads with ``?ack=later``, whatever the speed of the disk.
MAX_UNSYNCED_BYTES = 64 << 20

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


def _fsync_file(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _rename_all(moves: Sequence[tuple[str, Path]]) -> set[Path]:
    """Rename each file to its place; returns the directories whose entries changed (with the parents
    of directories created here, whose new entries must be made durable too)."""
    dirs: set[Path] = set()
    for tmp, target in moves:
        parent = target.parent
        if not parent.is_dir():
            missing = [p for p in (parent, *parent.parents) if not p.exists()]
            parent.mkdir(parents=True, exist_ok=True)
            dirs.update(p.parent for p in missing)
        os.replace(tmp, target)
        dirs.add(parent)
    return dirs


def _write_tmp(
    tmp_dir: Path,
    parts: Sequence[bytes | bytearray | Path],
    *,
    known: str | None = None,
    check: Callable[[int, str], None] | None = None,
) -> str:
    """Write the concatenation of ``parts`` (bytes, or files to copy) to a new file in ``tmp_dir``, not
    fsynced yet (``_write_groups`` does that); ``check(size, sha256)`` runs on what was written (its
    SHA-256 is ``known`` when the caller holds it) and if it raises the file is removed. Returns the path."""
    hasher = None if known is not None else WholeFileHasher()
    size = 0
    fd, name = tempfile.mkstemp(dir=tmp_dir)
    try:
        with os.fdopen(fd, "wb") as out:
            for part in parts:
                data = part if not isinstance(part, Path) else part.read_bytes()
                out.write(data)
                size += len(data)
                if hasher is not None:
                    hasher.update(data)
        if check is not None:
            check(size, known if hasher is None else hasher.hexdigest())
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise
    return name


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


@dataclass(slots=True)
class _Job:
    """A checked file written to ``tmp``, to be made durable at ``target`` (a chunk, or the whole blob
    when ``index`` is None)."""

    tmp: str
    target: Path
    sha256: str
    index: int | None
    size: int
    done: asyncio.Future[None] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class HubBlobs:
    def __init__(self, store: SqliteStore, root: Path) -> None:
        self.store = store
        self.root = root
        self.tmp = root / "tmp"
        self.tmp.mkdir(parents=True, exist_ok=True)
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}  # per blob: the lock and its users
        self._queue: list[_Job] = []  # written, waiting for the next group
        self._writing: list[_Job] = []  # the group being made durable
        self._writer: asyncio.Task[None] | None = None
        self._unsynced = 0  # bytes queued or being made durable
        self._queued: dict[str, dict[int, asyncio.Future[None]]] = {}  # chunks not durable yet
        self._completing: dict[str, asyncio.Future[None]] = {}  # whole files not durable yet

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
        await self.flush()  # the acknowledgement of deferred uploads: what was written is durable first
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
            # every chunk held but not assembled cannot happen (the last one assembles); should it, the
            # last chunk is asked for again, which assembles
            missing = tuple(i for i in range(manifest.count) if i not in held[sha]) or (manifest.count - 1,)
            needs.append(BlobNeed(sha, "partial" if held[sha] else "missing", missing))
        return needs

    async def put_chunk(
        self,
        node: str,
        sha256: str,
        index: int,
        data: bytes | bytearray,
        digest: str | None = None,
        *,
        wait: bool = True,
    ) -> bool:
        """Store one checked chunk; assemble when all are here. Returns whether the blob is complete.

        ``digest`` is the chunk's SHA-256 when the caller already computed it (the sync API checked the
        request body against it). The chunk is checked against the manifest, then written to a temporary
        file; the chunk that completes a blob is not written on its own: the whole file is written from
        the chunks held and this one, and checked (size and SHA-256) **before** anything is queued.
        Durability comes in groups (``_write_groups``): fsync, rename to its place, fsync of the
        directory, one database transaction for the whole group.

        ``wait`` (the default): answer after that, as ever — True means the hub holds the blob whole,
        durably. ``wait=False`` (``?ack=later``): answer once the chunk is checked and written, durability
        follows in the background; the acknowledgement is ``need``, which waits for what is queued. An
        interruption still costs at most the chunk on the wire: every chunk received whole is made
        durable whether or not its sender is still there."""
        if self._unsynced > MAX_UNSYNCED_BYTES:  # back-pressure: the disk sets the pace
            await self.flush()
        async with self._blob_lock(sha256):
            # one query: the manifest (if ``node`` may see the blob), its state and the chunks held
            rows = await self.store.fetchall(
                "SELECT b.manifest, b.state, c.idx FROM blobs b LEFT JOIN blob_chunks c ON c.sha256 = "
                "b.sha256 WHERE b.sha256 = ? AND EXISTS (SELECT 1 FROM blob_refs r WHERE r.sha256 = "
                "b.sha256 AND (r.log = ? OR r.log = ?))",
                (sha256, node, mailbox_log(node)),
            )
            if not rows:
                raise NotFound(
                    "blob_unknown", f"no entry of {node} references blob {sha256[:12]}; push metadata first"
                )
            manifest = Manifest.from_body(decode(bytes(rows[0][0])))
            if digest is None:
                digest = hashlib.sha256(data).hexdigest()
            try:
                check_chunk(manifest, index, data, digest)
            except BlobMismatch as exc:
                raise Unprocessable(exc.code, exc.reason) from None
            pending = self._completing.get(sha256)
            complete = True
            if pending is None:
                if rows[0][1] == "complete":
                    return True
                durable = {idx for _, _, idx in rows if idx is not None}
                queued = self._queued.get(sha256, {})
                if all(i in durable or i in queued for i in range(manifest.count) if i != index):
                    # the whole file is written from the chunks' files: the queued ones must be in place
                    others = [done for i, done in queued.items() if i != index]
                    if others:
                        await asyncio.gather(*others)
                    pending = await self._queue_whole(manifest, index, data, digest)
                elif index in durable:
                    return False  # held already: nothing to do
                else:
                    tmp = await asyncio.to_thread(_write_tmp, self.tmp, [data])
                    pending = self._enqueue(
                        _Job(tmp, self._chunk_path(sha256, index), sha256, index, len(data))
                    )
                    self._queued.setdefault(sha256, {})[index] = pending
                    complete = False
        if not wait:
            return False
        await asyncio.shield(pending)
        return complete

    @asynccontextmanager
    async def _blob_lock(self, sha256: str) -> AsyncIterator[None]:
        """One upload at a time per blob; the lock is dropped when nobody holds or waits for it."""
        lock, users = self._locks.get(sha256, (asyncio.Lock(), 0))
        self._locks[sha256] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[sha256]
            if users == 1:
                del self._locks[sha256]
            else:
                self._locks[sha256] = (lock, users - 1)

    async def _queue_whole(
        self, manifest: Manifest, index: int, data: bytes | bytearray, digest: str
    ) -> asyncio.Future[None]:
        """Write the whole file from the held chunks and chunk ``index`` (in memory), check it, queue it.
        A one-chunk file is that chunk: its SHA-256 is already known."""
        sha = manifest.sha256
        parts: list[bytes | bytearray | Path] = [
            data if i == index else self._chunk_path(sha, i) for i in range(manifest.count)
        ]
        try:
            tmp = await asyncio.to_thread(
                _write_tmp,
                self.tmp,
                parts,
                known=digest if manifest.count == 1 else None,
                check=manifest.check_whole,
            )
        except BlobMismatch as exc:  # chunks matched but the whole does not: the manifest lies
            raise Unprocessable(exc.code, exc.reason) from None
        pending = self._enqueue(_Job(tmp, self.path_for(sha), sha, None, manifest.size))
        self._completing[sha] = pending
        return pending

    # -- durability in groups ----------------------------------------------------------------------

    def _enqueue(self, job: _Job) -> asyncio.Future[None]:
        self._queue.append(job)
        self._unsynced += job.size
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_groups())
        return job.done

    async def flush(self) -> None:
        """Wait until every chunk written so far is durable (or its group has failed)."""
        jobs = [job.done for job in (*self._writing, *self._queue)]
        if jobs:
            await asyncio.gather(*(asyncio.shield(done) for done in jobs), return_exceptions=True)

    async def _write_groups(self) -> None:
        """Make the queued files durable, one group at a time (what arrives meanwhile is the next group):
        fsync every file, rename each to its place, fsync every directory touched, then one transaction
        records the chunks and the complete blobs. Nothing is recorded before its bytes are on disk."""
        while self._queue:
            self._writing, self._queue = self._queue, []
            group = self._writing
            error: BaseException | None = None
            try:
                await self._make_durable(group)
                whole = {job.sha256 for job in group if job.index is None}
                if whole:  # committed: the chunks' files are not needed any more
                    await asyncio.to_thread(self._drop_chunks, whole)
            except Exception as exc:  # noqa: BLE001 - handed to every waiter of the group
                error = exc
                log.warning("blob group of %d files not made durable: %r", len(group), exc)
                for job in group:
                    Path(job.tmp).unlink(missing_ok=True)
            self._writing = []
            for job in group:
                self._unsynced -= job.size
                if job.index is None:
                    if self._completing.get(job.sha256) is job.done:
                        del self._completing[job.sha256]
                else:
                    queued = self._queued.get(job.sha256, {})
                    if queued.get(job.index) is job.done:
                        del queued[job.index]
                        if not queued:
                            del self._queued[job.sha256]
                if job.done.done():
                    continue
                if error is None:
                    job.done.set_result(None)
                else:
                    job.done.set_exception(error)
                    job.done.exception()  # a deferred upload has no waiter: not an unhandled error

    async def _make_durable(self, group: list[_Job]) -> None:
        await asyncio.gather(*(asyncio.to_thread(_fsync_file, job.tmp) for job in group))
        dirs = await asyncio.to_thread(_rename_all, [(job.tmp, job.target) for job in group])
        await asyncio.gather(*(asyncio.to_thread(_fsync_dir, d) for d in dirs))
        whole = {job.sha256 for job in group if job.index is None}
        chunks = {(j.sha256, j.index) for j in group if j.index is not None and j.sha256 not in whole}
        async with self.store.write() as db:
            if chunks:
                await db.executemany("INSERT OR IGNORE INTO blob_chunks (sha256, idx) VALUES (?, ?)", chunks)
            if whole:
                now = now_ms()
                await db.executemany(
                    "UPDATE blobs SET state = 'complete', completed_ms = ? WHERE sha256 = ?",
                    [(now, sha) for sha in whole],
                )
                await db.executemany("DELETE FROM blob_chunks WHERE sha256 = ?", [(sha,) for sha in whole])

    def _drop_chunks(self, shas: set[str]) -> None:
        """The chunk files of blobs now complete (best effort: a leftover is harmless)."""
        for sha in shas:
            chunk_dir = self.root / "chunks" / sha
            try:
                for part in chunk_dir.iterdir():
                    part.unlink(missing_ok=True)
                chunk_dir.rmdir()
            except OSError:
                pass

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
