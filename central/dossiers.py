"""Dossier state at the hub: the protocol's deterministic fold over every log, and public tracking.

After each commit the codes of the dossiers touched are queued; ``refresh(code)`` folds every trusted
entry naming the dossier (node logs and hub mailboxes; entries quarantined after a revocation cut are
left out until a person accepts them) and keeps one ``dossiers`` row (routing: receiving and pickup
node; the lookup-code hash; the public view) and its ``dossier_conflicts``.

``GET /api/v1/track/<code>?k=<lookup code>`` answers the public view (status, timeline of kinds and
times, due dates; no personal data) and 404 alike for an unknown code or a wrong lookup code, rate
limited per client IP.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiosqlite
from aiohttp import web

from central.errors import NotFound, RateLimited
from central.store import SqliteStore
from protocol import Entry, canonical, decode
from protocol.dossier import DossierState, EventRecord, LookupHash, fold, verify_lookup_code

__all__ = ["Dossiers", "Routing", "public_view", "track_routes"]

track_routes = web.RouteTableDef()


@dataclass(frozen=True, slots=True)
class Routing:
    code: str
    receiving_node: str
    pickup_node: str


def public_view(state: DossierState) -> dict[str, Any]:
    """What a citizen may see: no names, ids, phones, actors or documents."""
    return {
        "code": state.code,
        "status": int(state.status),
        "status_name": state.status.label,
        "received_at": state.received_at,
        "due_at": state.due_at,
        "adjusted_due_at": state.adjusted_due_at,
        "promised_at": state.promised_at,
        "ended_at": state.ended_at,
        "result_ready": state.result is not None,
        "timeline": [{"kind": t.kind, "at": t.time[0]} for t in state.timeline],
    }


@dataclass
class Dossiers:
    store: SqliteStore
    clock: Any
    pending: set[str] = field(default_factory=set)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    # More rows kept from the same fold, in the same transaction (e.g. the web side's dossier index).
    on_refresh: list[Callable[[aiosqlite.Connection, DossierState], Awaitable[None]]] = field(
        default_factory=list
    )

    def committed(self, log: str, epoch: int, entries: Sequence[Entry]) -> None:
        for entry in entries:
            code = entry.body.get("dossier") if entry.kind.startswith("dossier.") else None
            if isinstance(code, str):
                self.pending.add(code)
        if self.pending:
            self.wake.set()

    async def run(self) -> None:
        """Background projector: refresh every queued dossier (bounded work per wake-up)."""
        while True:
            await self.wake.wait()
            self.wake.clear()
            while self.pending:
                code = self.pending.pop()
                await self.refresh(code)

    async def refresh(self, code: str) -> DossierState | None:
        rows = await self.store.fetchall(
            "SELECT e.log, e.epoch, e.seq, e.raw FROM entries e WHERE e.dossier = ? AND NOT EXISTS "
            "(SELECT 1 FROM quarantine q WHERE q.log = e.log AND q.epoch = e.epoch AND q.seq = e.seq "
            "AND q.code = 'revoked' AND q.decision IS NOT 'accepted')",
            (code,),
        )
        records = []
        for log, epoch, seq, raw in rows:
            entry = Entry.parse(bytes(raw))
            records.append(EventRecord(log, epoch, seq, entry.time, entry.kind, entry.body, entry.hash))
        result = fold(records)
        state = result.dossiers.get(code)
        if state is None or state.receiving_node is None:
            return state
        now = self.clock()
        async with self.store.write() as db:
            await db.execute(
                "INSERT OR REPLACE INTO dossiers (code, receiving_node, pickup_node, lookup, state, "
                "conflicts, updated_ms) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    code,
                    state.receiving_node,
                    state.pickup_node or state.receiving_node,
                    None if state.lookup is None else canonical(state.lookup.to_body()),
                    canonical(public_view(state)),
                    len(state.open_conflicts),
                    now,
                ),
            )
            await db.execute("DELETE FROM dossier_conflicts WHERE code = ?", (code,))
            await db.executemany(
                "INSERT OR IGNORE INTO dossier_conflicts (code, log, epoch, seq, reason, found_ms) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                [
                    (code, c.record.log, c.record.epoch, c.record.seq, f"{c.reason}: {c.detail}", now)
                    for c in state.open_conflicts
                ],
            )
            for extra in self.on_refresh:
                await extra(db, state)
        return state

    async def routing(self, code: str) -> Routing | None:
        row = await self.store.fetchone(
            "SELECT receiving_node, pickup_node FROM dossiers WHERE code = ?", (code,)
        )
        if row is None:
            await self.refresh(code)
            row = await self.store.fetchone(
                "SELECT receiving_node, pickup_node FROM dossiers WHERE code = ?", (code,)
            )
        return None if row is None else Routing(code, row[0], row[1])

    async def track(self, code: str, key: str) -> dict[str, Any]:
        row = await self.store.fetchone("SELECT lookup, state FROM dossiers WHERE code = ?", (code,))
        not_found = NotFound("not_found", "no dossier with this code and lookup code")
        if row is None or row[0] is None or not key or len(key) > 32:
            await asyncio.to_thread(time.sleep, 0.05)  # answer no faster than a real check would
            raise not_found
        lookup = decode(bytes(row[0]))
        stored = LookupHash(alg=lookup["alg"], hash=lookup["hash"], iterations=lookup["iterations"])
        if not await asyncio.to_thread(verify_lookup_code, code, key, stored):
            raise not_found
        view: dict[str, Any] = decode(bytes(row[1]))
        return view


@dataclass
class IpLimiter:
    per_minute: int
    hits: dict[str, list[float]] = field(default_factory=dict)

    def check(self, ip: str) -> None:
        now = time.monotonic()
        if len(self.hits) > 10_000:  # bounded memory: forget idle clients
            self.hits = {k: v for k, v in self.hits.items() if v and now - v[-1] < 60}
        recent = [t for t in self.hits.get(ip, []) if now - t < 60]
        if len(recent) >= self.per_minute:
            self.hits[ip] = recent
            raise RateLimited("rate_limited", "too many lookups; try again in a minute", retry_after=60)
        recent.append(now)
        self.hits[ip] = recent


DOSSIERS = web.AppKey("dossiers", Dossiers)
TRACK_LIMIT = web.AppKey("track_limit", IpLimiter)


@track_routes.get("/api/v1/track/{code}")
async def track(request: web.Request) -> web.Response:
    request.app[TRACK_LIMIT].check(request.remote or "?")
    view = await request.app[DOSSIERS].track(request.match_info["code"], request.query.get("k", ""))
    return web.Response(
        body=canonical(view), content_type="application/json", headers={"Cache-Control": "no-store"}
    )


__all__ += ["DOSSIERS", "TRACK_LIMIT", "IpLimiter"]
