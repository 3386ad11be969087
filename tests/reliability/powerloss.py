"""D3: power loss at every sync point, for the node's SQLite database and for its blob files.

``kill -9`` lets the kernel write back everything the process wrote; a power cut keeps only what was
synced. Both models below keep the files that were synced and, at a chosen crash point, decide the fate
of every write since the last sync, per 512-byte sector piece (SQLite's ``test6.c`` idea):

- ``keep``: every unsynced write reached the disk;
- ``drop``: none did;
- ``garble``: each piece independently kept, dropped or overwritten with random bytes (seeded). Only the
  written bytes are garbled, never the rest of their sector: SQLite assumes powersafe overwrite (its
  unix default), and so does the blob store.

**SQLite** (``CrashVFS``, apsw): a Python VFS inheriting the default one. Writes go through to the real
files (reads need them) and are also recorded per file until that file's ``xSync``; at every ``xSync``
(before it runs) the power-loss images of the three variants are materialised: each file as of its last
sync plus the unsynced writes and truncations with their fate, the WAL included, and the ``-shm`` as it
is (``keep``/``drop``) or random (``garble``). File creation and deletion are taken as immediate, as in
``test6.c``. The node itself opens its database with SQLCipher (``sqlcipher3`` through aiosqlite,
``node.dbcipher``), which offers no VFS hook, so the workload runs once through the node's real code
(``Store``, ``Desk.receive``, ``open_desk``, ``ScanIntake`` + ``ScanRouter``) with a trace callback on
every connection ``node.dbcipher`` opens, and the *exact SQL text* its writer executed (the trace gives
it with the bound values inlined, migrations included; ``PRAGMA key`` and the ``cipher_*`` pragmas are
dropped in the callback, so the key is never stored) is replayed through apsw on the crash VFS.
apsw's SQLite has no SQLCipher codec, so the replay and its images are **plaintext**: the crash model is
SQLite's pager/WAL write and sync ordering, which SQLCipher shares (it is SQLite's own pager and WAL
code with each page encrypted in the codec hook; pages are 4096 bytes in both, SQLCipher keeps 80 of
them for IV + HMAC, so page contents and counts differ slightly, not the order of writes and syncs).
``replay_matches`` proves the replay writes the same database (``iterdump`` of the plaintext replay
equal to that of the node's encrypted database read through a keyed connection). Every image is then
recovered (WAL) and ``integrity_check``-ed by SQLite, exported into an encrypted database under the
node's key (``encrypt_image``: ``ATTACH ... KEY`` + ``sqlcipher_export``) in a folder holding the
node's keyring, and opened with the real stack (``Store.open``, ``verify_node``).

**Blob files** (``CrashFS``: the ``FileOps`` seam of ``node.blobs``): records every write, fsync (file
or directory) and rename of the blob store; a crash point is every fsync (before it takes effect) and
every committed SQLite transaction (``Store.on_commit``: the moment a registration becomes durable). The
image of ``blobs/`` keeps, per directory, the entries as of its last fsync (``drop``), all of them
(``keep``) or a seeded mix (``garble``); file data is the content of the last fsync plus the unsynced
writes with their fate. The database beside it is the committed state (``snapshot_db``: ``sqlcipher_export``
under the node's key from a read transaction; SQLite's own durability is the VFS part's job), with the
node's keyring, and the registered blobs are read back through the decrypting reader: a torn ciphertext
fails its GCM tag.
"""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import sqlite3
import stat
import types
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from node.blobs import FileOps

__all__ = [
    "SECTOR",
    "VARIANTS",
    "CrashFS",
    "CrashVFS",
    "Event",
    "Image",
    "apply_fate",
    "capture_sql",
    "dump",
    "encrypt_image",
    "replay",
    "replay_matches",
    "snapshot_db",
]

SECTOR = 512
VARIANTS = ("keep", "drop", "garble")

Op = tuple[str, int, bytes]  # ("w", offset, data) or ("t", size, b"")


def apply_fate(base: bytes, pending: list[Op], variant: str, rng: random.Random) -> bytes:
    """``base`` (synced content) with the unsynced ``pending`` writes/truncations under ``variant``."""
    out = bytearray(base)
    for kind, where, data in pending:
        if kind == "t":
            if variant == "keep" or (variant == "garble" and rng.random() < 0.5):
                del out[where:]
            continue
        pos = where
        while pos < where + len(data):
            end = min(where + len(data), (pos // SECTOR + 1) * SECTOR)
            piece = data[pos - where : end - where]
            fate = variant if variant != "garble" else rng.choice(VARIANTS)
            if fate == "garble":
                piece = rng.randbytes(len(piece))
            if fate != "drop":
                if len(out) < end:
                    out.extend(b"\0" * (end - len(out)))
                out[pos:end] = piece
            pos = end
    return bytes(out)


@dataclass(frozen=True, slots=True)
class Image:
    """One power-loss state: where it is, which crash point and variant made it, what was receipted."""

    path: Path
    point: int
    variant: str
    receipted: frozenset[str]
    digest: str


# -- SQLite: capture the node's SQL, replay it on a crash VFS -------------------------------------------


@dataclass(frozen=True, slots=True)
class Event:
    """One step of the captured workload: a writer statement, a receipt, or a new writer connection."""

    kind: str  # "sql" | "receipt" | "session"
    text: str = ""


_SECRET = ("PRAGMA KEY", "PRAGMA REKEY", "PRAGMA CIPHER")  # key material, SQLCipher's own settings


def _keyless(sql: str) -> bool:
    """False for the statements that carry the key or set SQLCipher's own settings (dropped)."""
    words = " ".join(sql.replace("=", " = ").split()).upper()
    if words.startswith(_SECRET) or words.startswith("PRAGMA MAIN.KEY"):
        return False
    return not (words.startswith("ATTACH") and " KEY " in f"{words} ")


@contextmanager
def capture_sql(events: list[Event]) -> Iterator[Callable[[str], None]]:
    """Record the SQL of every node database connection opened meanwhile (``node.dbcipher.connect``,
    hence ``aconnect``, so the store's writer and reader); the writers are the connections that set
    ``PRAGMA journal_mode=WAL`` (``Store.open``'s writer). The trace is set on the SQLCipher connection
    before its ``PRAGMA key``; the key and cipher pragmas are dropped in the callback, so the key is
    never stored. Yields ``receipt(code)`` to mark acknowledgements."""
    from node import dbcipher

    real_module = dbcipher.sqlcipher
    per_conn: list[list[str]] = []
    order: list[tuple[int, int]] = []  # (connection, index of its statement) in execution order
    receipts: list[tuple[int, str]] = []

    def traced_connect(*args: Any, **kwargs: Any) -> Any:
        conn = real_module.connect(*args, **kwargs)
        statements: list[str] = []
        per_conn.append(statements)
        n = len(per_conn) - 1

        def trace(sql: str) -> None:
            if sql.lstrip().startswith("--"):  # a trigger's body, run by the statement already recorded
                return
            if not _keyless(sql):
                return
            statements.append(sql)
            order.append((n, len(statements) - 1))

        conn.set_trace_callback(trace)
        return conn

    class _Traced(types.ModuleType):  # dbcipher's ``sqlcipher`` with a tracing ``connect``
        def __getattr__(self, name: str) -> Any:
            return getattr(real_module, name)

    shim = _Traced("sqlcipher3.dbapi2")
    shim.connect = traced_connect  # type: ignore[attr-defined]
    dbcipher.sqlcipher = shim  # type: ignore[assignment]
    try:
        yield lambda code: receipts.append((len(order), code))
    finally:
        dbcipher.sqlcipher = real_module
    writers = {
        n for n, st in enumerate(per_conn) if any(s.strip().upper() == "PRAGMA JOURNAL_MODE=WAL" for s in st)
    }
    current = -1
    marks = iter(receipts)
    mark = next(marks, None)
    for i, (n, k) in enumerate(order):
        while mark is not None and mark[0] <= i:
            events.append(Event("receipt", mark[1]))
            mark = next(marks, None)
        if n not in writers:
            continue
        if n != current:
            events.append(Event("session"))
            current = n
        events.append(Event("sql", per_conn[n][k]))
    while mark is not None:
        events.append(Event("receipt", mark[1]))
        mark = next(marks, None)
    assert not any(e.kind == "sql" and not _keyless(e.text) for e in events)


def _run(execute: Callable[[str], Any], sql: str) -> None:
    for _ in execute(sql) or ():
        pass


def dump(conn: Any) -> list[str]:
    """``iterdump`` of a stdlib or a (keyed) SQLCipher connection: the stdlib's dump code, which needs
    only ``cursor``/``execute`` (sqlcipher3 connections have no ``iterdump`` of their own)."""
    from sqlite3.dump import _iterdump

    return list(_iterdump(conn))


def replay_matches(events: list[Event], original: Path, key: bytes, scratch: Path) -> bool:
    """Replay ``events`` with stdlib sqlite3 (no crash, plaintext) and compare its dump with the node's
    encrypted database read through a connection keyed with ``key`` (``node.dbcipher.connect``)."""
    from node.dbcipher import connect

    conn: sqlite3.Connection | None = None
    for event in events:
        if event.kind == "session":
            if conn is not None:
                conn.close()
            conn = sqlite3.connect(scratch, isolation_level=None)
        elif event.kind == "sql":
            assert conn is not None
            conn.execute(event.text).fetchall()
    if conn is not None:
        conn.close()
    a, b = connect(original, key), sqlite3.connect(scratch)
    try:
        return dump(a) == dump(b)
    finally:
        a.close()
        b.close()


class CrashVFS:
    """An apsw VFS named ``name`` over the default one that records unsynced writes per file and, at
    every xSync, calls ``on_sync(point)``; ``images(...)`` materialises the power-loss states."""

    def __init__(self, name: str, on_sync: Callable[[int], None]) -> None:
        import apsw

        files: dict[str, dict[str, Any]] = {}
        self.files = files
        self.syncs = 0
        self.on_sync = on_sync
        vfs = self

        class File(apsw.VFSFile):  # type: ignore[misc]
            def __init__(self, inherit: str, name: Any, flags: list[int]) -> None:
                path = name.filename() if isinstance(name, apsw.URIFilename) else name
                self.path = str(path)
                existing = Path(self.path).read_bytes() if self.path and os.path.exists(self.path) else b""
                super().__init__(inherit, name, flags)
                files.setdefault(self.path, {"durable": existing, "pending": []})

            def xWrite(self, data: bytes, offset: int) -> None:
                super().xWrite(data, offset)
                files[self.path]["pending"].append(("w", offset, bytes(data)))

            def xTruncate(self, size: int) -> None:
                super().xTruncate(size)
                files[self.path]["pending"].append(("t", size, b""))

            def xSync(self, flags: int) -> None:
                vfs.syncs += 1
                vfs.on_sync(vfs.syncs)  # power lost just before this sync: its writes are unsynced
                super().xSync(flags)
                state = files[self.path]
                state["durable"] = apply_fate(state["durable"], state["pending"], "keep", random.Random(0))
                state["pending"] = []

        class VFS(apsw.VFS):  # type: ignore[misc]
            def __init__(self) -> None:
                super().__init__(name, "")

            def xOpen(self, name: Any, flags: list[int]) -> File:
                return File("", name, flags)

            def xDelete(self, filename: str, syncdir: bool) -> None:
                super().xDelete(filename, syncdir)
                files.pop(str(filename), None)

        self._vfs = VFS()  # registered while this object lives

    def unregister(self) -> None:
        self._vfs.unregister()

    def image(self, out: Path, variant: str, rng: random.Random) -> str:
        """Write the power-loss state of every live file into ``out`` (same names); return its digest."""
        out.mkdir(parents=True)
        digest = hashlib.sha256()
        for path in sorted(self.files):
            if not os.path.exists(path):
                continue
            state = self.files[path]
            content = apply_fate(state["durable"], state["pending"], variant, rng)
            (out / Path(path).name).write_bytes(content)
            digest.update(Path(path).name.encode() + b"\0" + hashlib.sha256(content).digest())
        for path in sorted(p for p in Path(next(iter(self.files), ".")).parent.glob("*-shm")):
            shm = os.open(path, os.O_RDONLY)  # the VFS maps it; power loss leaves any content
            try:
                size = os.fstat(shm).st_size
                content = os.pread(shm, size, 0) if variant != "garble" else rng.randbytes(size)
            finally:
                os.close(shm)
            (out / path.name).write_bytes(content)
        return digest.hexdigest()


def replay(
    events: list[Event],
    db: Path,
    images: Path,
    *,
    seeds: int,
    vfs_name: str = "crashsim",
    rewrite: Callable[[str], str] = lambda sql: sql,
) -> tuple[list[Image], int]:
    """Replay ``events`` on ``db`` through a ``CrashVFS``; at every sync point write the images of the
    three variants (``garble`` with ``seeds`` seeds) under ``images``. Returns (images, sync points);
    identical images of one point are kept once (their count is still in the point's variants)."""
    import apsw

    receipted: set[str] = set()
    made: list[Image] = []

    def on_sync(point: int) -> None:
        seen: set[str] = set()
        for variant in VARIANTS:
            for seed in range(seeds if variant == "garble" else 1):
                rng = random.Random(f"{point}/{variant}/{seed}")
                out = images / f"{point:04d}-{variant}-{seed}"
                digest = vfs.image(out, variant, rng)
                if digest in seen and variant != "garble":
                    shutil.rmtree(out)
                    continue
                seen.add(digest)
                made.append(Image(out / db.name, point, variant, frozenset(receipted), digest))

    vfs = CrashVFS(vfs_name, on_sync)
    conn: Any = None
    try:
        for event in events:
            if event.kind == "session":
                if conn is not None:
                    conn.close()
                conn = apsw.Connection(str(db), vfs=vfs_name)
            elif event.kind == "sql":
                _run(conn.execute, rewrite(event.text))
            elif event.kind == "receipt":
                receipted.add(event.text)
        if conn is not None:
            conn.close()
            conn = None
        on_sync(vfs.syncs + 1)  # after the last sync: power lost once everything was done
    finally:
        if conn is not None:
            conn.close()
        vfs.unregister()
    return made, vfs.syncs + 1


# -- blob files: a crash-simulating FileOps ------------------------------------------------------------


@dataclass
class _Inode:
    durable: bytes | None = None  # content at its last fsync (None: never fsynced)
    pending: list[Op] = field(default_factory=list)


class CrashFS:
    """``FileOps`` for ``node.blobs`` that records what is durable under ``root`` (the blobs folder).

    ``ops()`` gives the FileOps; ``on_point(label)`` is called at every crash point: before each fsync
    and wherever the caller adds one (``Store.on_commit``). Directory listings are recorded at their
    fsync; the listing of every folder at ``start()`` counts as durable.
    """

    def __init__(self, root: Path, on_point: Callable[[str], None], *, fsync_files: bool = True) -> None:
        self.root = root
        self.on_point = on_point
        self.fsync_files = fsync_files  # False: a broken blob store that never fsyncs its files
        self.inodes: dict[int, _Inode] = {}
        self.dirs: dict[str, dict[str, int]] = {}  # durable listing: relative dir -> name -> inode
        self.seen: dict[int, bytes] = {}  # last content read per inode (files later unlinked)
        self.points = 0

    def start(self) -> None:
        for rel, listing in self._listing().items():
            self.dirs[rel] = listing
        for path in self.root.rglob("*"):
            if path.is_file():
                self.inodes[path.stat().st_ino] = _Inode(durable=path.read_bytes())

    def _listing(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for here, dirs, files in os.walk(self.root):
            rel = os.path.relpath(here, self.root)
            out[rel] = {n: os.lstat(os.path.join(here, n)).st_ino for n in dirs + files}
        return out

    def point(self, label: str) -> None:
        self.points += 1
        self.on_point(label)

    def ops(self) -> FileOps:
        def write(fd: int, view: memoryview) -> int:
            offset = os.lseek(fd, 0, os.SEEK_CUR)
            n = os.write(fd, view)
            ino = os.fstat(fd).st_ino
            self.inodes.setdefault(ino, _Inode()).pending.append(("w", offset, bytes(view[:n])))
            return n

        def fsync(fd: int) -> None:
            st = os.fstat(fd)
            self.point("fsync dir" if stat.S_ISDIR(st.st_mode) else "fsync file")
            if stat.S_ISDIR(st.st_mode):
                os.fsync(fd)
                path = os.readlink(f"/proc/self/fd/{fd}")
                rel = os.path.relpath(path, self.root)
                self.dirs[rel] = {n: os.lstat(os.path.join(path, n)).st_ino for n in os.listdir(path)}
                return
            if not self.fsync_files:
                return
            os.fsync(fd)
            inode = self.inodes.setdefault(st.st_ino, _Inode())
            inode.durable = os.pread(fd, st.st_size, 0)
            inode.pending = []

        def replace(a: str, b: str) -> None:
            os.replace(a, b)

        return FileOps(write=write, fsync=fsync, replace=replace, free_bytes=lambda p: 1 << 40)

    def image(self, out: Path, variant: str, rng: random.Random) -> None:
        """Materialise ``blobs/`` after a power loss now, under ``out``."""
        live = self._listing()
        for rel in live:
            for name, ino in live[rel].items():
                path = self.root / rel / name
                if path.is_file():
                    self.seen[ino] = path.read_bytes()
        rels = sorted(set(live) | set(self.dirs), key=lambda r: r.count("/") if r != "." else -1)
        present: set[str] = {"."}
        for rel in rels:
            if rel not in present:
                continue  # its parent's entry for it was lost
            durable, now = self.dirs.get(rel, {}), live.get(rel, {})
            names = set(durable) | set(now)
            (out / rel).mkdir(parents=True, exist_ok=True)
            for name in sorted(names):
                sub = os.path.normpath(os.path.join(rel, name))
                if variant == "keep":
                    ino = now.get(name)
                elif variant == "drop":
                    ino = durable.get(name)
                else:
                    ino = (
                        durable.get(name)
                        if durable.get(name) == now.get(name) or rng.random() < 0.5
                        else now.get(name)
                    )
                if ino is None:
                    continue
                if sub in live or sub in self.dirs:
                    present.add(sub)
                    continue
                inode = self.inodes.get(ino)
                if inode is None:  # not written through the seam: as seen
                    content = self.seen.get(ino, b"")
                else:
                    base = inode.durable if inode.durable is not None else b""
                    content = apply_fate(base, inode.pending, variant, rng)
                (out / sub).write_bytes(content)


def snapshot_db(live: Path, out: Path, key: bytes) -> None:
    """The committed state of the live (encrypted) database, as an encrypted copy under the same key
    (``sqlcipher_export`` from a keyed read transaction: safe beside the node's own connections)."""
    from node.dbcipher import connect

    src = connect(f"file:{live}?mode=ro", key, uri=True)
    try:
        src.execute(f"ATTACH DATABASE ? AS snap KEY \"x'{key.hex()}'\"", (str(out),))
        src.execute("BEGIN")
        src.execute("SELECT sqlcipher_export('snap')")
        version = src.execute("PRAGMA user_version").fetchone()[0]
        src.execute("COMMIT")
        src.execute(f"PRAGMA snap.user_version = {int(version)}")
        src.execute("DETACH DATABASE snap")
    finally:
        src.close()


def encrypt_image(plain: Path, out: Path, key: bytes) -> None:
    """The recovered plaintext image ``plain`` as an encrypted database ``out`` under ``key`` (SQLCipher's
    ``ATTACH ... KEY`` + ``sqlcipher_export``, the user_version copied): what the node's file would have
    been had the same pages been written through SQLCipher."""
    from sqlcipher3 import dbapi2 as sqlcipher

    src = sqlcipher.connect(str(plain), isolation_level=None)  # no key: a plaintext database
    try:
        src.execute(f"ATTACH DATABASE ? AS enc KEY \"x'{key.hex()}'\"", (str(out),))
        src.execute("SELECT sqlcipher_export('enc')")
        version = src.execute("PRAGMA user_version").fetchone()[0]
        src.execute(f"PRAGMA enc.user_version = {int(version)}")
        src.execute("DETACH DATABASE enc")
    finally:
        src.close()
