"""The node side of the sync benchmarks: a durable node log, realistic dossier entries, a real SyncClient.

Built like tests/e2e/nodesim.py (the node app lives on another branch): the node's ``entries`` table and
``SYNC_SQL`` in one SQLite file (WAL, ``synchronous=FULL``: receipts and sync state are durable), scans in
a ``node.blobs.BlobStore`` (written, hashed per 1 MiB chunk, fsynced), and the real
``node.sync_store.SqliteLocalLog`` + ``node.sync_client.SyncClient`` + ``HttpTransport``.

Entries are the lifecycle of dossiers (received, [attachment], transferred, processing, result_ready,
returned), valid for their kinds, ~460 bytes on average; they are signed once per benchmark run
(``sign_log``) and inserted into each fresh node store in one transaction (``NodeLog.load``), untimed.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import aiosqlite

from node.blobs import BlobStore
from node.sync_client import SYNC_SQL, HttpTransport, SyncClient
from node.sync_store import SqliteLocalLog
from protocol import (
    Enrollment,
    EnrollmentRequest,
    Entry,
    InviteToken,
    Manifest,
    PublicKey,
    canonical,
    decode,
    genesis_body,
    public_key_text,
    sign_entry,
)
from protocol.keys import Ed25519PrivateKey

__all__ = ["NodeLog", "dossier_events", "enroll", "sign_log"]

ENTRIES_SQL = """
CREATE TABLE entries (
    log TEXT NOT NULL, epoch INTEGER NOT NULL, seq INTEGER NOT NULL, hash TEXT NOT NULL UNIQUE, prev TEXT,
    time_ms INTEGER NOT NULL, time_n INTEGER NOT NULL, kind TEXT NOT NULL, dossier TEXT, actor TEXT,
    raw BLOB NOT NULL, recorded_at INTEGER NOT NULL, PRIMARY KEY (log, epoch, seq)
) STRICT;
CREATE INDEX entries_dossier ON entries (dossier) WHERE dossier IS NOT NULL;
"""

RECEIVED_AT = 1_795_401_000_000  # 2026-11-23 09:30 UTC+7: the date in the dossier codes
DUE_AT = 1_795_687_200_000
DAY_MS = 86_400_000


def _received(code: str, node: str) -> dict[str, Any]:
    return {
        "dossier": code,
        "actor": f"clerk.{node.lower()}",
        "applicant": {
            "name": "Nguyễn Văn An",
            "id_type": "cccd",
            "id_number": "001203012345",
            "phone": "0912345678",
        },
        "procedure": {"code": "1.004194", "version": "2025-07-01"},
        "documents": [
            {"name": "Tờ khai thay đổi thông tin cư trú (Mẫu CT01)", "form": "original", "count": 1}
        ],
        "channel": 1,
        "pickup": node,
        "fee": 15000,
        "received_at": RECEIVED_AT,
        "due_at": DUE_AT,
        "register": {"book": "2026-11", "line": 412},
        "lookup": {"alg": "pbkdf2-sha256", "hash": "ab" * 32, "iterations": 100_000},
    }


_LATER: list[tuple[str, dict[str, Any]]] = [
    ("dossier.transferred", {"agency": "Công an phường Tây Hồ"}),
    ("dossier.processing", {"step": "processing"}),
    ("dossier.result_ready", {"outcome": "approved"}),
    ("dossier.returned", {"recipient": {"name": "Nguyễn Văn An"}, "proxy": False, "channel": 1}),
]


def dossier_events(
    node: str, n: int, *, first_number: int = 1, manifests: Sequence[Manifest] = (), lifecycle: bool = True
) -> Iterator[tuple[str, dict[str, Any]]]:
    """``n`` (kind, body) pairs: whole dossier lifecycles (or only reception and scan without
    ``lifecycle``); the first dossiers carry one scan each."""
    scans = iter(manifests)
    made = 0
    number = first_number
    while True:
        code = f"000.00.01.H26-261123-{number:04d}"
        actor = f"clerk.{node.lower()}"
        events: list[tuple[str, dict[str, Any]]] = [("dossier.received", _received(code, node))]
        manifest = next(scans, None)
        if manifest is not None:
            events.append(
                (
                    "dossier.attachment",
                    {
                        "dossier": code,
                        "actor": actor,
                        "document": "CCCD",
                        "role": "document",
                        "manifest": manifest.to_body(),
                    },
                )
            )
        if lifecycle:
            events += [(kind, {**body, "dossier": code, "actor": actor}) for kind, body in _LATER]
        for event in events:
            if made == n:
                return
            yield event
            made += 1
        number += 1


def sign_log(
    key: Ed25519PrivateKey,
    node: str,
    n: int,
    *,
    t0: int = RECEIVED_AT,
    span_ms: int = 8 * 3_600_000,
    first_number: int = 1,
    manifests: Sequence[Manifest] = (),
    lifecycle: bool = True,
) -> list[Entry]:
    """Genesis (epoch 1) + ``n - 1`` dossier entries, times spread evenly over ``span_ms``."""
    genesis = sign_entry(
        key,
        log=node,
        epoch=1,
        seq=1,
        prev=None,
        time=(t0, 0),
        kind="log.genesis",
        body=genesis_body(node, 1, public_key_text(key)),
    )
    out = [genesis]
    step = max(1, span_ms // max(1, n))
    for i, (kind, body) in enumerate(
        dossier_events(node, n - 1, first_number=first_number, manifests=manifests, lifecycle=lifecycle),
        start=2,
    ):
        out.append(
            sign_entry(
                key,
                log=node,
                epoch=1,
                seq=i,
                prev=out[-1].hash,
                time=(t0 + i * step, 0),
                kind=kind,
                body=body,
            )
        )
    return out


async def enroll(
    session: aiohttp.ClientSession, base: str, token: InviteToken, key: Ed25519PrivateKey
) -> tuple[Enrollment, PublicKey]:
    """Enroll ``key`` with the token; returns the enrollment and the pinned (checked) hub key."""
    request = EnrollmentRequest.make(token, key)
    async with session.post(base + "/v1/enroll", data=canonical(request.to_wire())) as resp:
        assert resp.status == 200, await resp.text()
        enrollment = Enrollment.from_wire(decode(await resp.read()))
    return enrollment, enrollment.verify(token, public_key_text(key))


class NodeStore:
    """One aiosqlite connection, WAL, ``synchronous=FULL`` (the shape node.sync_store expects)."""

    def __init__(self, db: aiosqlite.Connection) -> None:
        self.db = db

    @classmethod
    async def open(cls, path: Path) -> NodeStore:
        db = await aiosqlite.connect(path, isolation_level=None)
        for pragma in ("journal_mode=WAL", "synchronous=FULL"):
            await db.execute(f"PRAGMA {pragma}")
        for sql in (ENTRIES_SQL + SYNC_SQL).split(";\n"):
            if sql.strip():
                await db.execute(sql)
        return cls(db)

    @asynccontextmanager
    async def write(self) -> AsyncIterator[aiosqlite.Connection]:
        await self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            await self.db.execute("ROLLBACK")
            raise
        await self.db.execute("COMMIT")

    async def fetchall(self, sql: str, args: Any = ()) -> list[Any]:
        return list(await self.db.execute_fetchall(sql, args))


def bench_keyring(root: Path, node: str = "CN01") -> Any:
    """The data keyring of a benchmark folder (the 'file' source, created on first use): blobs are
    encrypted as on a real node."""
    from node import atrest

    if (root / atrest.DATAKEY_FILE).exists():
        return atrest.unlock(root)
    return atrest.create_keyring(root, node)


@dataclass
class NodeLog:
    """A node's state directory: its SQLite log and its blob store, and the sync client over them."""

    node: str
    root: Path
    store: NodeStore
    blobs: BlobStore

    @classmethod
    async def create(cls, node: str, root: Path, blobs: BlobStore | None = None) -> NodeLog:
        root.mkdir(parents=True, exist_ok=True)
        store = await NodeStore.open(root / "node.sqlite3")
        return cls(
            node, root, store, blobs or BlobStore(root, low_disk_bytes=0, keyring=bench_keyring(root, node))
        )

    async def load(self, entries: Sequence[Entry]) -> None:
        """Insert signed entries as the journal would have (one transaction: setup, not timed)."""
        now = int(time.time() * 1000)
        async with self.store.write() as db:
            await db.executemany(
                "INSERT INTO entries (log, epoch, seq, hash, prev, time_ms, time_n, kind, dossier, actor, "
                "raw, "
                "recorded_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                [
                    (
                        e.log,
                        e.epoch,
                        e.seq,
                        e.hash,
                        e.prev,
                        e.time[0],
                        e.time[1],
                        e.kind,
                        e.body.get("dossier"),
                        e.body.get("actor"),
                        e.raw,
                        now,
                    )
                    for e in entries
                ],
            )

    def client(
        self, epoch: int, key: Ed25519PrivateKey, hub_key: PublicKey, base: str, **kw: Any
    ) -> SyncClient:
        local = SqliteLocalLog(
            self.store,
            self.node,
            self.blobs.path_for,
            wall=lambda: time.time_ns() // 1_000_000,
            data_dir=self.root,
            read_range=self.blobs.read_range,
        )
        return SyncClient(self.node, epoch, key, hub_key, local, HttpTransport(base), **kw)

    async def close(self, client: SyncClient | None = None) -> None:
        if client is not None:
            await client.transport.close()  # type: ignore[attr-defined]
        await self.store.db.close()
