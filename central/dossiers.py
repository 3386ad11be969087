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
import json
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
    batch: int = 64  # dossiers refreshed per transaction by the background projector
    busy: Callable[[], bool] = lambda: False  # pushes coming in: the projector waits for a pause
    max_defer_s: float = 2.0  # ... but never longer than this per batch
    refreshing: int = 0  # batches taken off ``pending`` whose fold is not committed yet

    def committed(self, log: str, epoch: int, entries: Sequence[Entry]) -> None:
        for entry in entries:
            code = entry.body.get("dossier") if entry.kind.startswith("dossier.") else None
            if isinstance(code, str):
                self.pending.add(code)
        if self.pending:
            self.wake.set()

    async def run(self) -> None:
        """Background projector: refresh the queued dossiers, ``batch`` of them per transaction.

        Ingest comes first: while ``busy()`` (pushes coming in) a batch waits, at most ``max_defer_s``,
        so a burst of pushes is not slowed by projections and the projector still moves under load."""
        while True:
            await self.wake.wait()
            self.wake.clear()
            while self.pending:
                deadline = time.monotonic() + self.max_defer_s
                while self.busy() and time.monotonic() < deadline:
                    await asyncio.sleep(0.02)
                codes = [self.pending.pop() for _ in range(min(self.batch, len(self.pending)))]
                self.refreshing += 1
                try:
                    await self.refresh_many(codes)
                finally:
                    self.refreshing -= 1

    def idle(self) -> bool:
        """Nothing queued and nothing being folded: every committed entry is in the projection."""
        return not self.pending and not self.wake.is_set() and not self.refreshing

    async def refresh(self, code: str) -> DossierState | None:
        return (await self.refresh_many([code]))[code]

    async def refresh_many(self, codes: Sequence[str]) -> dict[str, DossierState | None]:
        """Fold each dossier of ``codes`` from every trusted entry naming it; one read, one write."""
        marks = ",".join("?" * len(codes))
        rows = await self.store.fetchall(
            "SELECT e.dossier, e.log, e.epoch, e.seq, e.time_ms, e.time_n, e.kind, e.hash, e.raw "
            "FROM entries e "
            f"WHERE e.dossier IN ({marks}) AND NOT EXISTS "
            "(SELECT 1 FROM quarantine q WHERE q.log = e.log AND q.epoch = e.epoch AND q.seq = e.seq "
            "AND q.code = 'revoked' AND q.decision IS NOT 'accepted')",
            list(codes),
        )
        records: dict[str, list[EventRecord]] = {code: [] for code in codes}
        for code, log, epoch, seq, time_ms, time_n, kind, hash_, raw in rows:
            # Stored entries were verified (canonical, signed) on the way in: only the body is needed.
            body = json.loads(raw)["body"]
            records[code].append(EventRecord(log, epoch, seq, (time_ms, time_n), kind, body, hash_))
        states = {code: fold(found).dossiers.get(code) for code, found in records.items()}
        changed = [s for s in states.values() if s is not None and s.receiving_node is not None]
        if not changed:
            return states
        now = self.clock()
        async with self.store.write() as db:
            await db.executemany(
                "INSERT OR REPLACE INTO dossiers (code, receiving_node, pickup_node, lookup, state, "
                "conflicts, updated_ms) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        state.code,
                        state.receiving_node,
                        state.pickup_node or state.receiving_node,
                        None if state.lookup is None else canonical(state.lookup.to_body()),
                        canonical(public_view(state)),
                        len(state.open_conflicts),
                        now,
                    )
                    for state in changed
                ],
            )
            await db.executemany(
                "DELETE FROM dossier_conflicts WHERE code = ?", [(state.code,) for state in changed]
            )
            await db.executemany(
                "INSERT OR IGNORE INTO dossier_conflicts (code, log, epoch, seq, reason, found_ms) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                [
                    (state.code, c.record.log, c.record.epoch, c.record.seq, f"{c.reason}: {c.detail}", now)
                    for state in changed
                    for c in state.open_conflicts
                ],
            )
            for state in changed:
                for extra in self.on_refresh:
                    await extra(db, state)
        return states

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
