"""The node-side storage of sync: the ``LocalLog`` the sync client uses, over the node's SQLite store.

It reads the node's own log from the journal's ``entries`` table, stores hub mailbox entries there too
(with the node's projections, in one transaction), and keeps receipts, sync state and finished blobs in
the tables of ``SYNC_SQL`` (node.sync_client). ``hub_holds(code)`` tells whether every entry of a
dossier is covered by a hub receipt.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import aiosqlite

from protocol import Entry, Head, Heartbeat, LogHead, Manifest, Receipt
from protocol.blobs import MANIFEST_FIELDS, BlobMismatch

__all__ = ["SqliteLocalLog", "StoreLike"]

VERSION = "motcua-node/0.1"


class StoreLike(Protocol):
    def write(self) -> AbstractAsyncContextManager[aiosqlite.Connection]: ...
    async def fetchall(self, sql: str, args: Sequence[Any] = ()) -> list[Any]: ...


Projector = Callable[[aiosqlite.Connection, Entry], Awaitable[None]]


@dataclass
class SqliteLocalLog:
    store: StoreLike
    node: str
    blob_path: Callable[[str], Path]
    project: Projector | None = None
    wall: Callable[[], int] = lambda: 0
    data_dir: Path = Path(".")
    devices: Callable[[], tuple[list[dict[str, Any]], list[dict[str, Any]]]] = field(default=lambda: ([], []))
    #: (sha256, offset, length) -> plaintext bytes of an encrypted blob (node.blobs.BlobStore.read_range);
    #: None: the file at ``blob_path`` is the plaintext (simulators)
    read_range: Callable[[str, int, int], bytes] | None = None

    async def _one(self, sql: str, args: Sequence[Any] = ()) -> Any:
        rows = await self.store.fetchall(sql, args)
        return rows[0] if rows else None

    async def own_entries_after(self, epoch: int, seq: int, limit: int) -> list[bytes]:
        rows = await self.store.fetchall(
            "SELECT raw FROM entries WHERE log = ? AND epoch = ? AND seq > ? ORDER BY seq LIMIT ?",
            (self.node, epoch, seq, limit),
        )
        return [bytes(r[0]) for r in rows]

    async def own_head(self, epoch: int) -> Head:
        row = await self._one(
            "SELECT seq, hash FROM entries WHERE log = ? AND epoch = ? ORDER BY seq DESC LIMIT 1",
            (self.node, epoch),
        )
        return Head(self.node, epoch, 0, None) if row is None else Head(self.node, epoch, row[0], row[1])

    async def hub_head(self, log: str) -> tuple[int, str | None, tuple[int, int]]:
        row = await self._one(
            "SELECT seq, hash, time_ms, time_n FROM entries WHERE log = ? AND epoch = 1 ORDER BY seq DESC "
            "LIMIT 1",
            (log,),
        )
        return (0, None, (0, 0)) if row is None else (row[0], row[1], (row[2], row[3]))

    async def hub_keys(self, log: str) -> tuple[str | None, list[str]]:
        """The hub key in force at the stored head of ``log`` (its genesis key or its last
        ``hub.key_rotation``'s, None if nothing is stored) and the hub's earlier keys this node verified
        rotations from (``previous`` of the rotations stored in ``hub``)."""
        row = await self._one(
            "SELECT raw FROM entries WHERE log = ? AND epoch = 1 AND (seq = 1 OR kind = 'hub.key_rotation') "
            "ORDER BY seq DESC LIMIT 1",
            (log,),
        )
        rows = await self.store.fetchall(
            "SELECT raw FROM entries WHERE log = 'hub' AND epoch = 1 AND kind = 'hub.key_rotation' "
            "ORDER BY seq"
        )
        known = [str(Entry.parse(bytes(r[0])).body["previous"]) for r in rows]
        return (None if row is None else str(Entry.parse(bytes(row[0])).body["key"])), known

    async def store_hub_entries(self, entries: Sequence[Entry], pin: str | None = None) -> None:
        """Store verified hub entries; ``pin``: a new hub key (from a verified ``hub.key_rotation``) to
        pin in the same transaction (``sync_state`` ``pinned_hub_key`` = "<epoch> <key>")."""
        now = self.wall()
        async with self.store.write() as db:
            if pin is not None:
                await db.execute(
                    "INSERT INTO sync_state (key, value) VALUES ('pinned_hub_key', ?) ON CONFLICT (key) DO "
                    "UPDATE SET value = excluded.value",
                    (pin,),
                )
            for entry in entries:
                body = entry.body
                await db.execute(
                    "INSERT INTO entries (log, epoch, seq, hash, prev, time_ms, time_n, kind, dossier, "
                    "actor, raw, "
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
                        _text(body.get("dossier")),
                        _text(body.get("actor")),
                        entry.raw,
                        now,
                    ),
                )
                if self.project is not None:
                    await self.project(db, entry)
            last = max(e.time for e in entries)
            await db.execute(
                "INSERT INTO sync_state (key, value) VALUES ('observed_hlc', ?) ON CONFLICT (key) DO UPDATE "
                "SET value = max(value, excluded.value)",
                (f"{last[0]:016d}:{last[1]:010d}",),
            )

    async def store_receipt(self, receipt: Receipt) -> None:
        async with self.store.write() as db:
            await db.execute(
                "INSERT OR IGNORE INTO sync_receipts (log, epoch, seq, head, hub_time, sig) VALUES "
                "(?,?,?,?,?,?)",
                (receipt.log, receipt.epoch, receipt.seq, receipt.head, receipt.hub_time, receipt.sig),
            )

    async def pending_blobs(self, held_seq: int, epoch: int) -> list[Manifest]:
        """Attachments of entries the hub holds, whose blobs it does not hold whole yet, oldest first."""
        rows = await self.store.fetchall(
            "SELECT raw FROM entries WHERE log = ? AND epoch = ? AND seq <= ? AND kind = "
            "'dossier.attachment' "
            "ORDER BY seq",
            (self.node, epoch, held_seq),
        )
        done = {r[0] for r in await self.store.fetchall("SELECT sha256 FROM sync_blobs")}
        found: dict[str, Manifest] = {}
        for (raw,) in rows:
            value = Entry.parse(bytes(raw)).body.get("manifest")
            if isinstance(value, dict) and value.keys() == MANIFEST_FIELDS:
                try:
                    manifest = Manifest.from_body(value)
                except BlobMismatch:
                    continue
                if manifest.sha256 not in done:
                    found.setdefault(manifest.sha256, manifest)
        return list(found.values())

    async def read_chunk(self, manifest: Manifest, index: int) -> bytes:
        if self.read_range is not None:
            return await asyncio.to_thread(
                self.read_range, manifest.sha256, index * manifest.chunk_size, manifest.chunk_length(index)
            )
        with open(self.blob_path(manifest.sha256), "rb") as f:
            f.seek(index * manifest.chunk_size)
            return f.read(manifest.chunk_length(index))

    async def blob_done(self, sha256: str) -> None:
        async with self.store.write() as db:
            await db.execute(
                "INSERT OR IGNORE INTO sync_blobs (sha256, done_ms) VALUES (?, ?)", (sha256, self.wall())
            )

    async def blobs_done(self, shas: Sequence[str]) -> None:
        """``blob_done`` for many blobs, in one transaction."""
        now = self.wall()
        async with self.store.write() as db:
            await db.executemany(
                "INSERT OR IGNORE INTO sync_blobs (sha256, done_ms) VALUES (?, ?)", [(s, now) for s in shas]
            )

    async def set_state(self, values: dict[str, str]) -> None:
        async with self.store.write() as db:
            await db.executemany(
                "INSERT INTO sync_state (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = "
                "excluded.value",
                list(values.items()),
            )

    async def state(self) -> dict[str, str]:
        return {k: v for k, v in await self.store.fetchall("SELECT key, value FROM sync_state")}

    async def hub_holds(self, code: str) -> bool:
        """Whether a hub receipt covers every entry of this node's log about dossier ``code``."""
        row = await self._one(
            "SELECT count(*) FROM entries e WHERE e.log = ? AND e.dossier = ? AND NOT EXISTS "
            "(SELECT 1 FROM sync_receipts r WHERE r.log = e.log AND r.epoch = e.epoch AND r.seq >= e.seq)",
            (self.node, code),
        )
        held = await self._one(
            "SELECT count(*) FROM entries WHERE log = ? AND dossier = ?", (self.node, code)
        )
        return bool(held[0]) and row[0] == 0

    async def status(self) -> Heartbeat:
        heads = await self.store.fetchall(
            "SELECT epoch, max(seq), (SELECT hash FROM entries x WHERE x.log = e.log AND x.epoch = e.epoch "
            "ORDER BY seq DESC LIMIT 1) FROM entries e WHERE log = ? GROUP BY epoch ORDER BY epoch",
            (self.node,),
        )
        unacked = await self._one(
            "SELECT count(*), coalesce(sum(length(raw)), 0), min(recorded_at) FROM entries e WHERE log = ? "
            "AND NOT "
            "EXISTS (SELECT 1 FROM sync_receipts r WHERE r.log = e.log AND r.epoch = e.epoch AND r.seq >= "
            "e.seq)",
            (self.node,),
        )
        state = await self.state()
        printers, scanners = self.devices()
        now = self.wall()
        return Heartbeat(
            version=VERSION,
            heads=tuple(LogHead(self.node, r[0], r[1], r[2]) for r in heads),
            unacked_entries=unacked[0],
            unacked_bytes=unacked[1],
            oldest_unacked_ms=None if unacked[2] is None else max(0, now - unacked[2]),
            disk_free_bytes=shutil.disk_usage(self.data_dir if self.data_dir.exists() else os.getcwd()).free,
            printers=tuple(printers),
            scanners=tuple(scanners),
            clock_ms=now,
            last_error=state.get("last_error") or None,
        )


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None
