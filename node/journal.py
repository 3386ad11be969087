"""The journal: the node's signed, hash-chained log, and the only way node state changes.

``append(db, kind, body, actor=...)`` runs inside the caller's write transaction (``store.write()``):
it reads the head, stamps a hybrid-logical time, validates the body (an invalid local body is refused
with ``InvalidInput``, never appended), signs, inserts the entry's exact canonical bytes and updates the
projections in the same transaction. If anything fails, the caller's transaction rolls back and neither
the entry nor its projection rows exist. The caller answers (HTTP, printing) only after the commit.

The sync client reads the log through ``entries_after(epoch, seq)`` and ``head()``.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import aiosqlite
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from node.errors import InvalidInput, JournalError, NodeError
from node.store import run_sync
from node.syncgate import AppendBlocked, clock_for_append, read_gate_sync
from protocol import kinds
from protocol.chain import ChainState, verify_next
from protocol.dossier.events import DOSSIER_KINDS
from protocol.dossier.events import validate_body as validate_dossier_body
from protocol.encoding import nfc
from protocol.entry import GENESIS_KIND, Entry, genesis_body, sign_entry
from protocol.errors import BodyInvalid, ProtocolError
from protocol.hlc import HybridClock
from protocol.keys import PublicKey, parse_public_key, public_key_text
from protocol.position import Head

__all__ = ["JOURNAL_SQL", "Journal", "Projector", "insert_entry", "validate_local_body"]

JOURNAL_SQL = """
CREATE TABLE epochs (
    epoch       INTEGER PRIMARY KEY CHECK (epoch >= 1),
    public_key  TEXT NOT NULL,            -- base64url Ed25519 key of this epoch (verification)
    started_at  INTEGER NOT NULL,         -- unix ms
    sealed_seq  INTEGER,                  -- set when a later epoch seals this one
    sealed_head TEXT
) STRICT;

CREATE TABLE entries (
    log         TEXT NOT NULL,
    epoch       INTEGER NOT NULL,
    seq         INTEGER NOT NULL CHECK (seq >= 1),
    hash        TEXT NOT NULL UNIQUE,     -- SHA-256 hex of raw
    prev        TEXT,
    time_ms     INTEGER NOT NULL,
    time_n      INTEGER NOT NULL,
    kind        TEXT NOT NULL,
    dossier     TEXT,                     -- body.dossier for dossier events
    actor       TEXT,                     -- body.actor for dossier events
    raw         BLOB NOT NULL,            -- the exact canonical bytes that were signed and hashed
    recorded_at INTEGER NOT NULL,         -- unix ms when this node stored it
    PRIMARY KEY (log, epoch, seq)
) STRICT;

CREATE INDEX entries_dossier ON entries (dossier) WHERE dossier IS NOT NULL;
CREATE INDEX entries_time ON entries (time_ms, time_n);
"""

Projector = Callable[[aiosqlite.Connection, Entry], Awaitable[None]]
"""Updates projection rows for one freshly inserted entry, inside the same transaction. A projector may
carry ``many(db, entries)``: the same for several entries at once (``Journal.append_many`` uses it)."""

Wall = Callable[[], int]
T = TypeVar("T")


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


def validate_local_body(kind: str, body: Mapping[str, Any]) -> None:
    """Validate a body for its kind (core kinds and the dossier events); raise ``BodyInvalid``.

    ``protocol.kinds`` validates the dossier events with ``protocol.dossier.events.validate_body``
    (``BODY_VALIDATORS``), so that is called once, not a second time here."""
    kinds.validate_body(kind, body)
    if kind in DOSSIER_KINDS and not kinds.is_known(kind):
        validate_dossier_body(kind, body)


def _invalid(exc: BodyInvalid) -> InvalidInput:
    field = exc.field or "body"
    return InvalidInput({field: exc.reason}, "Nội dung sự kiện không hợp lệ; không ghi vào nhật ký.")


_INSERT_ENTRY = (
    "INSERT INTO entries (log, epoch, seq, hash, prev, time_ms, time_n, kind, dossier, actor, raw,"
    " recorded_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)"
)


def _entry_row(entry: Entry, recorded_at: int) -> tuple[object, ...]:
    body = entry.body
    dossier = body.get("dossier") if isinstance(body.get("dossier"), str) else None
    actor = body.get("actor") if isinstance(body.get("actor"), str) else None
    return (
        entry.log,
        entry.epoch,
        entry.seq,
        entry.hash,
        entry.prev,
        entry.time[0],
        entry.time[1],
        entry.kind,
        dossier,
        actor,
        entry.raw,
        recorded_at,
    )


async def insert_entry(db: aiosqlite.Connection, entry: Entry, *, recorded_at: int) -> None:
    """Insert one entry row (own log or another log the node stores, e.g. a hub mailbox)."""
    await db.execute(_INSERT_ENTRY, _entry_row(entry, recorded_at))


@dataclass(slots=True)
class Journal:
    """Appends signed entries to this node's log (``node_id``, current ``epoch``)."""

    node_id: str
    epoch: int
    key: Ed25519PrivateKey
    project: Projector | None = None
    wall: Wall = _wall_ms
    #: entries appended by this process (committed or not): the sync service compares it after commits
    appended: int = 0

    @property
    def public_key(self) -> PublicKey:
        return parse_public_key(public_key_text(self.key))

    @classmethod
    async def open(
        cls,
        db: aiosqlite.Connection,
        node_id: str,
        key: Ed25519PrivateKey,
        *,
        project: Projector | None = None,
        wall: Wall = _wall_ms,
    ) -> Journal:
        """The journal of the current (latest) epoch; the key must be that epoch's key."""
        async with db.execute("SELECT epoch, public_key FROM epochs ORDER BY epoch DESC LIMIT 1") as cursor:
            row = await cursor.fetchone()
        if row is None:
            raise JournalError("Máy trạm chưa được khởi tạo (chưa có nhật ký).", detail="no epoch")
        epoch, key_text = int(row[0]), str(row[1])
        if key_text != public_key_text(key):
            raise JournalError(
                "Khóa ký của máy trạm không khớp với khóa của nhật ký hiện tại.", detail=f"epoch {epoch}"
            )
        return cls(node_id=node_id, epoch=epoch, key=key, project=project, wall=wall)

    async def start_epoch(self, db: aiosqlite.Connection, previous: Head | None = None) -> Entry:
        """Record this epoch and write its genesis (entry 1). ``previous`` seals the epoch before."""
        now = self.wall()
        key_text = public_key_text(self.key)
        await db.execute(
            "INSERT INTO epochs (epoch, public_key, started_at) VALUES (?, ?, ?)", (self.epoch, key_text, now)
        )
        if previous is not None:
            await db.execute(
                "UPDATE epochs SET sealed_seq = ?, sealed_head = ? WHERE epoch = ?",
                (previous.seq, previous.hash, previous.epoch),
            )
        entry = sign_entry(
            self.key,
            log=self.node_id,
            epoch=self.epoch,
            seq=1,
            prev=None,
            time=HybridClock().now(now),
            kind=GENESIS_KIND,
            body=genesis_body(self.node_id, self.epoch, key_text, previous),
        )
        await insert_entry(db, entry, recorded_at=now)
        return entry

    async def head(self, db: aiosqlite.Connection) -> Head:
        """The last entry of the current epoch (seq 0 / hash None before genesis)."""
        async with db.execute(
            "SELECT seq, hash FROM entries WHERE log = ? AND epoch = ? ORDER BY seq DESC LIMIT 1",
            (self.node_id, self.epoch),
        ) as cursor:
            row = await cursor.fetchone()
        return (
            Head(self.node_id, self.epoch, int(row[0]), str(row[1]))
            if row
            else Head(self.node_id, self.epoch, 0, None)
        )

    async def append(
        self, db: aiosqlite.Connection, kind: str, body: Mapping[str, Any], *, actor: str
    ) -> Entry:
        """Sign and store one entry in the caller's write transaction; update projections.

        ``body`` gets ``actor`` (dossier events) and is NFC-normalised. Raises ``InvalidInput`` for a
        body that fails validation (nothing is written) and ``JournalError`` if the log has no head.
        """
        [result] = await self.append_many(db, [(kind, body, actor)])
        if isinstance(result, NodeError):
            raise result
        return result

    async def append_many(
        self,
        db: aiosqlite.Connection,
        items: Sequence[tuple[str, Mapping[str, Any], str]],
        *,
        built: bool = False,
    ) -> list[Entry | NodeError]:
        """Sign and store several entries, in order (``append_many_then`` without a last step)."""
        results, _ = await self.append_many_then(db, items, built=built)
        return results

    async def append_many_then(
        self,
        db: aiosqlite.Connection,
        items: Sequence[tuple[str, Mapping[str, Any], str]],
        *,
        built: bool = False,
        then: Callable[[sqlite3.Connection, list[Entry]], T] | None = None,
    ) -> tuple[list[Entry | NodeError], T | None]:
        """Sign and store several entries, in order, in the caller's write transaction (group commit).

        ``items`` are ``(kind, body, actor)``. The head is read once; each entry follows the one before
        (seq, prev, a strictly later hybrid time). An item whose body is invalid gets its ``InvalidInput``
        in its place in the result and takes no sequence number; the others are written. The rows go
        in with one ``executemany``, then the projections of all of them (``Projector.many`` when the
        projector has it, else one call per entry, in order). A database error raises: the caller's
        transaction then rolls back and none of them exists.

        ``built``: the bodies come from ``protocol.dossier.builders``, which validated each of them
        (NFC, with its ``actor``) an instant ago; they are not validated again unless the actor
        differs. Reading the head, signing, the INSERT and a projector with ``sync_many`` run in one
        hand-off to the writer's thread (``run_sync``), not a round trip of the event loop each.

        ``then(conn, entries)``, if given, runs on the writer's thread after the entries and their
        projections, in the same hand-off when it can (the caller's own rows for these entries); its
        result comes back with the entries (``None`` when nothing was written).
        """
        if not db.in_transaction:
            raise JournalError(detail="append outside a write transaction")
        prepared: list[tuple[str, dict[str, Any]] | NodeError] = []
        for kind, body, actor in items:
            kind = str(kind)  # a StrEnum member is signed as its plain value
            if kind == GENESIS_KIND:
                raise JournalError(detail="log.genesis is written by start_epoch only")
            if built and kind in DOSSIER_KINDS and body.get("actor") == actor:
                prepared.append((kind, dict(body)))  # validated by its builder (NFC, actor set)
                continue
            full: dict[str, Any] = dict(nfc(dict(body)))
            if kind in DOSSIER_KINDS or kind.startswith("dossier."):
                full["actor"] = actor
            try:
                validate_local_body(kind, full)
            except BodyInvalid as exc:
                prepared.append(_invalid(exc))
                continue
            prepared.append((kind, full))
        if not any(isinstance(p, tuple) for p in prepared):
            return [p for p in prepared if isinstance(p, NodeError)], None
        project_sync = getattr(self.project, "sync_many", None) if self.project is not None else None
        inline = then if self.project is None or project_sync is not None else None
        results, entries, after = await run_sync(
            db, self._append_sync, prepared, self.wall(), project_sync, inline
        )
        if entries and self.project is not None and project_sync is None:
            many = getattr(self.project, "many", None)
            if many is not None:
                await many(db, entries)
            else:
                for entry in entries:
                    await self.project(db, entry)
            if then is not None:
                after = await run_sync(db, then, entries)
        self.appended += len(entries)
        return results, after

    def _append_sync(
        self,
        conn: sqlite3.Connection,
        prepared: list[tuple[str, dict[str, Any]] | NodeError],
        wall: int,
        project_sync: Callable[..., None] | None,
        then: Callable[[sqlite3.Connection, list[Entry]], T] | None,
    ) -> tuple[list[Entry | NodeError], list[Entry], T | None]:
        """On the writer's thread: head, sync gate, signing, the INSERT, ``project_sync``, ``then``."""
        row = conn.execute(
            "SELECT seq, hash, time_ms, time_n FROM entries WHERE log = ? AND epoch = ?"
            " ORDER BY seq DESC LIMIT 1",
            (self.node_id, self.epoch),
        ).fetchone()
        if row is None:
            raise JournalError(detail=f"log {self.node_id} epoch {self.epoch} has no genesis")
        seq, prev, last = int(row[0]), str(row[1]), (int(row[2]), int(row[3]))
        block, observed = read_gate_sync(conn)
        if block:
            raise AppendBlocked(block)
        clock = clock_for_append(last, observed, wall)
        results: list[Entry | NodeError] = []
        entries: list[Entry] = []
        for item in prepared:
            if isinstance(item, NodeError):
                results.append(item)
                continue
            kind, full = item
            before = clock.last
            stamp = clock.now(wall)
            try:
                entry = sign_entry(
                    self.key,
                    log=self.node_id,
                    epoch=self.epoch,
                    seq=seq + 1,
                    prev=prev,
                    time=stamp,
                    kind=kind,
                    body=full,
                )
            except ProtocolError as exc:  # too large, out of range: a local input problem
                clock.last = before  # nothing was appended: the next entry takes this place
                results.append(InvalidInput({"body": exc.reason}, "Nội dung quá lớn hoặc không hợp lệ."))
                continue
            seq, prev = entry.seq, entry.hash
            entries.append(entry)
            results.append(entry)
        if entries:
            conn.executemany(_INSERT_ENTRY, [_entry_row(e, wall) for e in entries])
            if project_sync is not None:  # every body here passed validate_body just now
                project_sync(conn, entries, frozenset(e.hash for e in entries))
            if then is not None:
                return results, entries, then(conn, entries)
        return results, entries, None

    async def entries_after(
        self, db: aiosqlite.Connection, epoch: int, seq: int, *, limit: int = 1000
    ) -> list[Entry]:
        """Entries of this node's log strictly after (epoch, seq), oldest first, at most ``limit``."""
        async with db.execute(
            "SELECT raw FROM entries WHERE log = ? AND (epoch > ? OR (epoch = ? AND seq > ?))"
            " ORDER BY epoch, seq LIMIT ?",
            (self.node_id, epoch, epoch, seq, limit),
        ) as cursor:
            return [Entry.parse(bytes(row[0])) async for row in cursor]


async def epoch_keys(db: aiosqlite.Connection) -> dict[int, PublicKey]:
    """Each epoch's registered key (what a verifier checks that epoch against)."""
    async with db.execute("SELECT epoch, public_key FROM epochs ORDER BY epoch") as cursor:
        return {int(row[0]): parse_public_key(str(row[1])) async for row in cursor}


async def verify_log(
    db: aiosqlite.Connection, node_id: str, *, progress: Callable[[int], None] | None = None
) -> list[Head]:
    """Verify every epoch of this node's log from genesis; return each epoch's head.

    Raises the precise ``ProtocolError`` of the first bad entry (with ``.position`` attached).
    """
    keys = await epoch_keys(db)
    heads: list[Head] = []
    for epoch, key in keys.items():
        state = ChainState.start(node_id, epoch, key)
        async with db.execute(
            "SELECT raw, hash, seq FROM entries WHERE log = ? AND epoch = ? ORDER BY seq", (node_id, epoch)
        ) as cursor:
            async for raw, stored_hash, seq in cursor:
                try:
                    entry = Entry.parse(bytes(raw))
                    state = verify_next(state, entry)
                    if entry.hash != stored_hash or entry.seq != seq:
                        raise JournalError(detail=f"row {node_id}/{epoch}:{seq} does not match its bytes")
                    validate_local_body(entry.kind, entry.body)
                except (ProtocolError, JournalError) as exc:
                    exc.position = f"{node_id}/{epoch}:{seq}"  # type: ignore[attr-defined]
                    raise
                if progress is not None:
                    progress(1)
        heads.append(state.as_head)
    return heads
