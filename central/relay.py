"""Relay between branches: a node's dossier entry reaches every other branch involved in the dossier.

A dossier received at CN01 to be handed back at CN02 involves two branches; what either records later
(CN02's ``dossier.returned``, CN01's supplement) must reach the other. On ingest, the push's commit
hook writes one ``relay_outbox`` row (central.schema) per accepted dossier entry (quarantined ones are
held back), in the same transaction as the entries: the outbox is durable, so a crash between ingest
and relay loses nothing.
The relay task drains it in order: for each row, the dossier's routing (receiving and pickup node, from
the fold) gives the other involved branches; each gets the entry as ``hub.forward`` ``{entry, key}`` in
its mailbox (``key``: the public key the hub registered for the entry's (node, epoch)), unless that
mailbox already carries it; the forwards and the row's ``done_ms`` are committed together. Exactly once
per (entry, mailbox): rows are unique by entry hash, and the check and the write run under the routing
lock the officers' actions take too (their first forward to a pickup node also copies the reception).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import aiosqlite
from aiohttp import web

from central.dossiers import Dossiers
from central.hub import Hub
from central.mailbox import Post
from central.store import Extra
from protocol import Entry, canonical, decode, is_hub_log, mailbox_log

__all__ = ["RELAY", "Relay"]

log = logging.getLogger("motcua.central.relay")


@dataclass
class Relay:
    hub: Hub
    dossiers: Dossiers
    batch: int = 200
    max_defer_s: float = 1.0  # pushes coming in go first, but a relay waits at most this long
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    relayed: int = 0  # forwards written since start (tests, metrics)

    def hook(
        self, log: str, epoch: int, entries: Sequence[Entry], quarantined: frozenset[int]
    ) -> Extra | None:
        """Receiver hook: queue the accepted dossier entries of a node's push, in the push's transaction."""
        if is_hub_log(log):
            return None
        rows = [
            (log, epoch, e.seq, e.hash, code)
            for e in entries
            if e.seq not in quarantined
            and e.kind.startswith("dossier.")
            and isinstance(code := e.body.get("dossier"), str)
        ]
        if not rows:
            return None

        async def extra(db: aiosqlite.Connection) -> None:
            await db.executemany(
                "INSERT OR IGNORE INTO relay_outbox (log, epoch, seq, hash, dossier) VALUES (?, ?, ?, ?, ?)",
                rows,
            )

        return extra

    def committed(self, log: str, epoch: int, entries: Sequence[Entry]) -> None:
        if not is_hub_log(log):
            self.wake.set()

    async def run(self) -> None:
        """Background task: drain the outbox now (rows left by a previous run) and after every push."""
        self.wake.set()
        while True:
            await self.wake.wait()
            self.wake.clear()
            deadline = time.monotonic() + self.max_defer_s
            while self.hub.receiver.busy() and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            try:
                while await self.drain():
                    pass
            except asyncio.CancelledError:
                raise
            except Exception:  # a failed drain is retried on the next push or in a few seconds
                log.exception("relay between branches failed; retrying")
                await asyncio.sleep(2.0)
                self.wake.set()

    async def drain(self) -> int:
        """Relay one batch of the outbox; returns how many rows it settled (0: empty)."""
        rows = await self.hub.store.fetchall(
            "SELECT o.id, o.log, o.epoch, o.dossier, e.raw FROM relay_outbox o JOIN entries e "
            "ON e.log = o.log AND e.epoch = o.epoch AND e.seq = o.seq WHERE o.done_ms IS NULL "
            "ORDER BY o.id LIMIT ?",
            (self.batch,),
        )
        if not rows:
            return 0
        routes: dict[str, tuple[str, ...]] = {}
        for code in {str(r[3]) for r in rows}:
            routing = await self.dossiers.routing(code)
            routes[code] = () if routing is None else (routing.receiving_node, routing.pickup_node)
        async with self.hub.mailbox.route_lock:
            sent: dict[tuple[str, str], set[bytes]] = {}
            posts: list[Post] = []
            for _, node_log, epoch, code, raw in rows:
                raw = bytes(raw)
                for node in dict.fromkeys(routes[code]):
                    if node == node_log:
                        continue
                    box = mailbox_log(node)
                    carried = sent.get((box, code))
                    if carried is None:
                        carried = sent[(box, code)] = await _carried(self.hub, box, code)
                    if raw in carried:
                        continue
                    key = await self.hub.registry.key(node_log, epoch)
                    if key is None:  # pragma: no cover - every stored node entry has a registered key
                        continue
                    posts.append(Post(box, "hub.forward", {"entry": decode(raw), "key": key.text}))
                    carried.add(raw)
            ids = [(self.hub.clock(), int(r[0])) for r in rows]

            async def settle(db: aiosqlite.Connection) -> None:
                await db.executemany("UPDATE relay_outbox SET done_ms = ? WHERE id = ?", ids)

            if posts:
                await self.hub.mailbox.post(posts, also=[settle])
                self.relayed += len(posts)
            else:
                async with self.hub.store.write() as db:
                    await settle(db)
        return len(rows)

    async def idle(self) -> bool:
        row = await self.hub.store.fetchone("SELECT count(*) FROM relay_outbox WHERE done_ms IS NULL")
        return not self.wake.is_set() and row is not None and row[0] == 0

    async def stop(self, task: asyncio.Task[None]) -> None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


RELAY = web.AppKey("relay", Relay)


async def _carried(hub: Hub, box: str, code: str) -> set[bytes]:
    """The node entries about ``code`` that mailbox ``box`` already forwards (exact bytes)."""
    found = set()
    for (raw,) in await hub.store.fetchall(
        "SELECT raw FROM entries WHERE log = ? AND kind = 'hub.forward' AND dossier = ?", (box, code)
    ):
        found.add(canonical(decode(bytes(raw))["body"]["entry"]))
    return found
