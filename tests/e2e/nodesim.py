"""A minimal node for sync tests: the journal's entries table, SYNC_SQL, a signer and a blob folder.

It drives the sync client in isolation (no web app, no intake): the sync client and the
SqliteLocalLog under test are the real ones.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiosqlite

from node.sync_client import SYNC_SQL, HttpTransport, SyncClient
from node.sync_store import SqliteLocalLog
from protocol import (
    Enrollment,
    EnrollmentRequest,
    Entry,
    HybridClock,
    InviteToken,
    canonical,
    decode,
    generate_private_key,
    genesis_body,
    manifest_for_bytes,
    public_key_text,
    sign_entry,
)

ENTRIES_SQL = """
CREATE TABLE entries (
    log TEXT NOT NULL, epoch INTEGER NOT NULL, seq INTEGER NOT NULL, hash TEXT NOT NULL UNIQUE, prev TEXT,
    time_ms INTEGER NOT NULL, time_n INTEGER NOT NULL, kind TEXT NOT NULL, dossier TEXT, actor TEXT,
    raw BLOB NOT NULL, recorded_at INTEGER NOT NULL, PRIMARY KEY (log, epoch, seq)
) STRICT;
"""


class MiniStore:
    def __init__(self, db: aiosqlite.Connection) -> None:
        self.db = db

    @classmethod
    async def open(cls, path: Path) -> MiniStore:
        db = await aiosqlite.connect(path, isolation_level=None)
        await db.execute("PRAGMA journal_mode=WAL")
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


@dataclass
class MiniNode:
    node: str
    root: Path
    store: MiniStore
    wall: Any
    key: Any = field(default_factory=generate_private_key)
    epoch: int = 1
    hlc: HybridClock = field(default_factory=HybridClock)
    client: SyncClient | None = None

    @classmethod
    async def create(cls, node: str, root: Path, wall: Any) -> MiniNode:
        root.mkdir(parents=True, exist_ok=True)
        return cls(node, root, await MiniStore.open(root / "node.sqlite3"), wall)

    def blob_path(self, sha: str) -> Path:
        return self.root / "blobs" / sha

    async def enroll(self, base: str, token: InviteToken) -> Enrollment:
        import aiohttp

        request = EnrollmentRequest.make(token, self.key)
        async with aiohttp.ClientSession() as session:
            async with session.post(base + "/v1/enroll", data=canonical(request.to_wire())) as resp:
                assert resp.status == 200, await resp.text()
                enrollment = Enrollment.from_wire(decode(await resp.read()))
        hub_key = enrollment.verify(token, public_key_text(self.key))
        self.epoch = enrollment.epoch
        local = SqliteLocalLog(self.store, self.node, self.blob_path, wall=self.wall, data_dir=self.root)
        self.client = SyncClient(
            self.node, self.epoch, self.key, hub_key, local, HttpTransport(base), wall=self.wall
        )
        await self.append(
            "log.genesis", genesis_body(self.node, self.epoch, public_key_text(self.key), enrollment.previous)
        )
        return enrollment

    async def append(self, kind: str, body: dict[str, Any]) -> Entry:
        rows = await self.store.fetchall(
            "SELECT seq, hash FROM entries WHERE log = ? AND epoch = ? ORDER BY seq DESC LIMIT 1",
            (self.node, self.epoch),
        )
        seq, prev = rows[0] if rows else (0, None)
        entry = sign_entry(
            self.key,
            log=self.node,
            epoch=self.epoch,
            seq=seq + 1,
            prev=prev,
            time=self.hlc.now(self.wall()),
            kind=kind,
            body=body,
        )
        async with self.store.write() as db:
            await db.execute(
                "INSERT INTO entries (log, epoch, seq, hash, prev, time_ms, time_n, kind, dossier, actor, "
                "raw, "
                "recorded_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    entry.log,
                    entry.epoch,
                    entry.seq,
                    entry.hash,
                    entry.prev,
                    entry.time[0],
                    entry.time[1],
                    entry.kind,
                    body.get("dossier"),
                    body.get("actor"),
                    entry.raw,
                    self.wall(),
                ),
            )
        if self.client is not None:
            self.client.poke()
        return entry

    async def attach(self, code: str, data: bytes) -> str:
        manifest = manifest_for_bytes(data, "application/pdf", 2)
        path = self.blob_path(manifest.sha256)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        await self.append(
            "dossier.attachment",
            {
                "dossier": code,
                "actor": "clerk",
                "document": "CCCD",
                "role": "document",
                "manifest": manifest.to_body(),
            },
        )
        assert hashlib.sha256(data).hexdigest() == manifest.sha256
        return manifest.sha256

    async def close(self) -> None:
        if self.client is not None:
            await self.client.transport.close()  # type: ignore[attr-defined]
        await self.store.db.close()
