"""The hub's own logs, signed with the hub key: ``hub`` (broadcast) and ``hub.<NODE>`` (one per node).

Each is a normal log (epoch 1, genesis naming the hub key) stored beside the node logs. ``post`` appends
entries to one or several of them in one transaction, so an officer's decision and its forward to the
pickup branch are committed together or not at all. Times come from one hybrid logical clock for the hub.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from central.store import EntryBatch, EntryRow, Extra, SqliteStore
from protocol import (
    GENESIS_KIND,
    Entry,
    HybridClock,
    genesis_body,
    public_key_text,
    sign_entry,
    validate_body,
)
from protocol.keys import Ed25519PrivateKey

__all__ = ["BROADCAST", "HUB_EPOCH", "Mailbox", "Post"]

BROADCAST = "hub"
HUB_EPOCH = 1


@dataclass(frozen=True, slots=True)
class Post:
    """One entry to write: in ``log``, of ``kind``, with ``body``; ``forward_to`` names more mailboxes that
    get a ``hub.forward`` copy of it."""

    log: str
    kind: str
    body: Mapping[str, Any]
    forward_to: tuple[str, ...] = ()


@dataclass
class Mailbox:
    store: SqliteStore
    hub_key: Ed25519PrivateKey
    clock: Callable[[], int]
    hlc: HybridClock = field(default_factory=HybridClock)
    hooks: list[Callable[[str, int, Sequence[Entry], frozenset[int]], Extra | None]] = field(
        default_factory=list
    )
    committed: list[Callable[[str, int, Sequence[Entry]], None]] = field(default_factory=list)
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    # Held while deciding which entries a mailbox still lacks and writing their forwards (officers'
    # actions, central.relay), so no entry is forwarded twice to the same mailbox.
    route_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _started: bool = False

    async def _start(self) -> None:
        row = await self.store.fetchone(
            "SELECT time_ms, time_n FROM heads WHERE log = 'hub' OR log LIKE 'hub.%' ORDER BY time_ms DESC, "
            "time_n DESC LIMIT 1"
        )
        if row is not None:
            self.hlc.last = (row[0], row[1])
        self._started = True

    async def post(self, posts: Sequence[Post], *, also: Sequence[Extra] = ()) -> list[Entry]:
        """Sign and commit ``posts`` (plus their forwards) atomically, with ``also`` (more statements) in
        the same transaction; return the entries written."""
        async with self._lock:
            if not self._started:
                await self._start()
            pending: dict[str, list[Entry]] = {}
            heads: dict[str, tuple[int, str | None]] = {}
            written: list[Entry] = []

            async def append(log: str, kind: str, body: Mapping[str, Any]) -> Entry:
                if log not in heads:
                    head = await self.store.head(log, HUB_EPOCH)
                    heads[log] = (0, None) if head is None else (head.seq, head.hash)
                    if head is not None and head.time > self.hlc.last:  # another process wrote after us
                        self.hlc.last = head.time
                    if head is None:
                        genesis = self._sign(
                            log, 1, None, GENESIS_KIND, genesis_body(log, HUB_EPOCH, self.key_text)
                        )
                        pending.setdefault(log, []).append(genesis)
                        heads[log] = (1, genesis.hash)
                seq, prev = heads[log]
                validate_body(kind, body)
                entry = self._sign(log, seq + 1, prev, kind, body)
                pending.setdefault(log, []).append(entry)
                heads[log] = (entry.seq, entry.hash)
                return entry

            for post in posts:
                entry = await append(post.log, post.kind, post.body)
                written.append(entry)
                for target in post.forward_to:
                    if target != post.log:
                        written.append(await append(target, "hub.forward", {"entry": entry.to_dict()}))
            batches = []
            for log, entries in pending.items():
                batch = EntryBatch(
                    log=log,
                    epoch=HUB_EPOCH,
                    base_seq=entries[0].seq - 1,
                    rows=[EntryRow(e.seq, e.hash, e.kind, e.time, _dossier(e), e.raw) for e in entries],
                    received_ms=self.clock(),
                )
                for hook in self.hooks:
                    extra = hook(log, HUB_EPOCH, entries, frozenset())
                    if extra is not None:
                        batch.extra.append(extra)
                batches.append(batch)
            if batches:
                batches[0].extra.extend(also)
            await self.store.commit(*batches)
        for log, entries in pending.items():
            for listener in self.committed:
                listener(log, HUB_EPOCH, entries)
        return written

    @property
    def key_text(self) -> str:
        return public_key_text(self.hub_key)

    def _sign(self, log: str, seq: int, prev: str | None, kind: str, body: Mapping[str, Any]) -> Entry:
        return sign_entry(
            self.hub_key,
            log=log,
            epoch=HUB_EPOCH,
            seq=seq,
            prev=prev,
            time=self.hlc.now(self.clock()),
            kind=kind,
            body=body,
        )


def _dossier(entry: Entry) -> str | None:
    """The dossier an entry is about; a ``hub.forward`` is indexed under its inner entry's dossier, so the
    hub can tell which entries of a dossier a pickup node's mailbox already carries."""
    body = entry.body
    if entry.kind == "hub.forward" and isinstance(body.get("entry"), dict):
        inner = body["entry"]
        if isinstance(inner.get("kind"), str) and isinstance(inner.get("body"), dict):
            body = inner["body"] if inner["kind"].startswith("dossier.") else {}
    elif not entry.kind.startswith("dossier."):
        return None
    code = body.get("dossier")
    return code if isinstance(code, str) else None
